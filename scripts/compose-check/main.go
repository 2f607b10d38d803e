// compose-check loads a Compose file the way Docker Compose does (compose-go: interpolation from
// an env file, the compose-spec JSON schema embedded in compose-go, then the model's own checks)
// and prints the resolved project, like `docker compose config`, without a Docker engine.
//
//	compose-check -f docker-compose.yml --env-file .env.example [--profile simulator]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	file := flag.String("f", "docker-compose.yml", "the Compose file")
	envFile := flag.String("env-file", "", "an env file for interpolation (e.g. .env.example)")
	profiles := flag.String("profile", "", "comma-separated profiles to enable")
	quiet := flag.Bool("q", false, "print only errors")
	flag.Parse()

	options := []cli.ProjectOptionsFn{cli.WithName("edgewatch"), cli.WithWorkingDirectory(".")}
	if *envFile != "" {
		options = append(options, cli.WithEnvFiles(*envFile), cli.WithDotEnv)
	}
	if *profiles != "" {
		options = append(options, cli.WithProfiles(strings.Split(*profiles, ",")))
	}
	projectOptions, err := cli.NewProjectOptions([]string{*file}, options...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
		os.Exit(2)
	}
	project, err := cli.ProjectFromOptions(context.Background(), projectOptions)
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %s is not a valid Compose file: %v\n", *file, err)
		os.Exit(1)
	}
	if *quiet {
		return
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
