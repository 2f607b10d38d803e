"""Offline checks of the deployment artefacts that cannot run here (no Docker engine, no cluster).

Run by scripts/validate-deploy.sh inside its virtualenv (kubernetes-validate, jsonschema, PyYAML,
dockerfile-parse). Each check prints one line; any failure exits non-zero with the reason.

- Grafana: the dashboard JSON and both provisioning files against packaging/grafana/schemas/,
  and the dashboard's data source uid is the provisioned one.
- Dockerfiles (packaging/docker/Dockerfile.*): multi-stage, a dependency layer cooked before the
  sources are copied, `--locked` builds of a workspace package, a non-root USER, a HEALTHCHECK and
  a version label in the final stage; every compose `build:` points at one of them.
- docker-compose.yml: every service with a healthcheck; every depends_on waits for health; named
  volumes only for data; the nginx and Prometheus configuration it mounts exist.
"""

import json
import pathlib
import re
import sys
import tomllib

import jsonschema
import yaml
from dockerfile_parse import DockerfileParser

ROOT = pathlib.Path(__file__).resolve().parent.parent
failures = []



# Files a compose service mounts that the operator makes, not the repository (docs/deploy.md).
USER_FILES = {"./sim-credentials.txt"}

def check(name, ok, why=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + why}")
    if not ok:
        failures.append(name)


def validate(name, instance, schema_file):
    schema = json.loads((ROOT / schema_file).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(instance), key=str)
    check(name, not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]))


def grafana():
    dashboard = json.loads((ROOT / "packaging/grafana/dashboards/edgewatch.json").read_text())
    validate("grafana dashboard schema", dashboard, "packaging/grafana/schemas/dashboard.schema.json")
    for name in ["datasources/prometheus.yml", "dashboards/edgewatch.yml"]:
        provisioning = yaml.safe_load((ROOT / "packaging/grafana/provisioning" / name).read_text())
        validate(f"grafana provisioning {name}", provisioning, "packaging/grafana/schemas/provisioning.schema.json")
    datasource = yaml.safe_load((ROOT / "packaging/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in datasource["datasources"]}
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    check("grafana panels use the provisioned data source", used <= uids, f"{used - uids}")
    ids = [p["id"] for p in dashboard["panels"]]
    check("grafana panel ids are unique", len(ids) == len(set(ids)), f"{ids}")


def workspace_packages():
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    return {tomllib.loads((ROOT / m / "Cargo.toml").read_text())["package"]["name"] for m in members}


def dockerfiles():
    packages = workspace_packages()
    files = sorted((ROOT / "packaging/docker").glob("Dockerfile.*"))
    check("a Dockerfile per image", {f.suffix[1:] for f in files} >= {"signing", "devices", "monitoring", "broker", "agent"},
          f"{[f.name for f in files]}")
    for path in files:
        parser = DockerfileParser(fileobj=open(path, "rb"), env_replace=False)
        instructions = parser.structure
        froms = [i for i in instructions if i["instruction"] == "FROM"]
        last_from = max(i["startline"] for i in froms)
        final = [i for i in instructions if i["startline"] > last_from]
        runs = [i["value"] for i in instructions if i["instruction"] == "RUN"]
        copies = [(i["startline"], i["value"]) for i in instructions if i["instruction"] == "COPY"]
        name = path.name
        check(f"{name}: multi-stage", len(froms) >= 3, f"{len(froms)} stages")
        cook = [i["startline"] for i in instructions if i["instruction"] == "RUN" and "cargo chef cook" in i["value"]]
        sources = [line for line, value in copies if value.split()[:2] == [".", "."]]
        check(f"{name}: dependencies cooked before the sources are copied", bool(cook) and bool(sources) and min(cook) < max(sources))
        build = [r for r in runs if "cargo build" in r]
        check(f"{name}: one --locked --release build", len(build) == 1 and "--locked" in build[0] and "--release" in build[0], f"{build}")
        package = re.search(r"-p (\S+)", build[0]).group(1) if build else None
        check(f"{name}: builds workspace package {package}", package in packages, f"not one of {sorted(packages)}")
        users = [i["value"].strip() for i in final if i["instruction"] == "USER"]
        check(f"{name}: runs as a non-root user", bool(users) and users[-1].split(":")[0] not in ("root", "0"), f"{users}")
        check(f"{name}: has a HEALTHCHECK", any(i["instruction"] == "HEALTHCHECK" for i in final))
        labels = parser.labels
        check(f"{name}: labelled with its version", labels.get("org.opencontainers.image.version") == "${VERSION}", f"{labels}")
        check(f"{name}: small runtime base", re.search(r"-slim|distroless|alpine", froms[-1]["value"]) is not None, froms[-1]["value"])


def compose():
    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    wanted = {"signing", "devices", "monitoring", "broker", "postgres", "redis", "rabbitmq", "mongodb", "nginx", "prometheus", "grafana", "simulator"}
    check("compose: the distributed shape's services", wanted <= set(services), f"missing {wanted - set(services)}")
    for name, service in services.items():
        if name != "simulator":
            check(f"compose {name}: healthcheck", "healthcheck" in service)
        for dependency, condition in (service.get("depends_on") or {}).items():
            check(f"compose {name}: waits for {dependency} to be healthy",
                  condition.get("condition") == "service_healthy" and "healthcheck" in services[dependency])
        build = service.get("build")
        if build:
            check(f"compose {name}: builds {build['dockerfile']}", (ROOT / build["dockerfile"]).is_file())
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in USER_FILES:
                check(f"compose {name}: mounts {source}, which the user creates (docs/deploy.md)",
                      source.lstrip("./") in (ROOT / "docs/deploy.md").read_text())
            elif source.startswith("./"):
                check(f"compose {name}: mounts existing {source}", (ROOT / source).exists())
            else:
                check(f"compose {name}: named volume {source} is declared", source in (spec.get("volumes") or {}))
    check("compose: simulator only in its profile", services["simulator"].get("profiles") == ["simulator"])
    env = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if line and not line.startswith("#"))
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "docker-compose.yml").read_text()))
    check("compose: .env.example sets every required variable", required <= set(env), f"missing {required - set(env)}")


grafana()
dockerfiles()
compose()
if failures:
    print(f"{len(failures)} deployment check(s) failed", file=sys.stderr)
    sys.exit(1)
