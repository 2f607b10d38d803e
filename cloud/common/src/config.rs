//! Layered configuration: built-in defaults, then an optional TOML file, then environment
//! variables `EDGEWATCH_<SECTION>__<KEY>` (double underscore between levels, e.g.
//! `EDGEWATCH_HTTP__LISTEN=0.0.0.0:8080`). Each service owns its config struct; the pieces every
//! service has ([`HttpConfig`], [`LogConfig`]) live here.

use std::{net::SocketAddr, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub const ENV_PREFIX: &str = "EDGEWATCH_";

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(Box<figment::Error>);

/// Loads `T`: defaults from `T::default()`, overridden by `file` (if given; it must exist) and then
/// by the environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    load_from(file, Env::prefixed(ENV_PREFIX).split("__"))
}

fn load_from<T>(file: Option<&Path>, env: Env) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError(Box::new(figment::Error::from(format!(
                "config file {} does not exist",
                file.display()
            )))));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment.merge(env).extract().map_err(|e| ConfigError(Box::new(e)))
}

/// The scheme of a backing-service URL (`postgres`, `sqlite`, `amqp`, `redis`, `memory`, ...),
/// which picks the adapter. `sqlite::memory:`-style URLs without `//` count too.
pub fn url_scheme(url: &str) -> Option<&str> {
    url.split_once("://").or_else(|| url.split_once(':')).map(|(scheme, _)| scheme)
}

/// Where a service listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; bigger ones get 413 before they are buffered.
    pub body_limit: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 8080)), body_limit: 2 << 20 }
    }
}

/// How a service logs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info,edgewatch_devices=debug`; `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Auto, filter: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise (containers, journald, files).
    Auto,
    Pretty,
    Json,
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use std::io::Write;

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Demo {
        http: HttpConfig,
        log: LogConfig,
        name: String,
    }

    #[test]
    fn defaults_then_file_then_env() {
        let mut file = tempfile_in_target("demo.toml");
        writeln!(file.1, "name = \"from-file\"\n[http]\nlisten = \"127.0.0.1:9000\"").unwrap();
        figment::Jail::expect_with(|jail| {
            let loaded: Demo = load(None).unwrap();
            assert_eq!(loaded.http.listen.port(), 8080);
            let loaded: Demo = load(Some(&file.0)).unwrap();
            assert_eq!(loaded.name, "from-file");
            assert_eq!(loaded.http.listen.port(), 9000);
            jail.set_env("EDGEWATCH_HTTP__LISTEN", "127.0.0.1:9100");
            jail.set_env("EDGEWATCH_LOG__FORMAT", "json");
            let loaded: Demo = load(Some(&file.0)).unwrap();
            assert_eq!(loaded.http.listen.port(), 9100);
            assert_eq!(loaded.log.format, LogFormat::Json);
            assert_eq!(loaded.name, "from-file");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_problem() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EDGEWATCH_HTTP__LISTEN", "not an address");
            let err = load::<Demo>(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("http.listen"), "{err}");
            let err = load::<Demo>(Some(Path::new("/nonexistent/edgewatch.toml"))).unwrap_err();
            assert!(err.to_string().contains("does not exist"), "{err}");
            Ok(())
        });
    }

    fn tempfile_in_target(name: &str) -> (std::path::PathBuf, std::fs::File) {
        let dir = std::env::temp_dir().join(format!("edgewatch-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap();
        (path, file)
    }
}
