//! Which configuration a command uses, and where the embedded default keeps what it creates.
//! `--config` wins, then `SESGATE_CONFIG`, then `/etc/sesgate/sesgate.toml` when it exists, then
//! the embedded default. Environment lookups are passed in, so tests need not set variables.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// The system-wide configuration the package installs.
pub const SYSTEM_CONFIG: &str = "/etc/sesgate/sesgate.toml";

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(PathBuf),
    Environment(PathBuf),
    System(PathBuf),
    /// The embedded default, with its state directory.
    Embedded {
        state_dir: PathBuf,
    },
}

impl Source {
    /// Chooses the configuration; `env` reads an environment variable.
    pub fn locate(
        flag: Option<&Path>,
        env: &dyn Fn(&str) -> Option<OsString>,
        system: &Path,
    ) -> Source {
        let set = |name: &str| env(name).filter(|value| !value.is_empty());
        if let Some(file) = flag {
            Source::Flag(file.to_owned())
        } else if let Some(file) = set("SESGATE_CONFIG") {
            Source::Environment(file.into())
        } else if system.exists() {
            Source::System(system.to_owned())
        } else {
            Source::Embedded {
                state_dir: state_dir(env),
            }
        }
    }

    /// The process's own choice: its environment and [`SYSTEM_CONFIG`].
    pub fn of_process(flag: Option<&Path>) -> Source {
        Source::locate(
            flag,
            &|name| std::env::var_os(name),
            Path::new(SYSTEM_CONFIG),
        )
    }

    /// The configuration, read again on every call (a reload reads the same source).
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            Source::Flag(file) | Source::Environment(file) | Source::System(file) => {
                Config::load(file)
            }
            Source::Embedded { state_dir } => Ok(Config::embedded_default(state_dir.clone())),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Source::Embedded { .. })
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Source::Flag(file) => format!("{} (--config)", file.display()),
            Source::Environment(file) => format!("{} (SESGATE_CONFIG)", file.display()),
            Source::System(file) => format!("{} (the system configuration)", file.display()),
            Source::Embedded { state_dir } => {
                format!("the embedded default (state in {})", state_dir.display())
            }
        }
    }
}

/// Where the embedded default writes its certificate and outbox: `SESGATE_STATE_DIR`, else
/// `$XDG_STATE_HOME/sesgate`, else `$HOME/.local/state/sesgate`, else `./sesgate-state`.
/// Relative XDG values are ignored, as the XDG specification says.
pub fn state_dir(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |name: &str| {
        env(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = set("SESGATE_STATE_DIR") {
        dir
    } else if let Some(dir) = set("XDG_STATE_HOME").filter(|dir| dir.is_absolute()) {
        dir.join("sesgate")
    } else if let Some(home) = set("HOME").filter(|dir| dir.is_absolute()) {
        home.join(".local/state/sesgate")
    } else {
        PathBuf::from("sesgate-state")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn flag_wins_then_environment_then_system_then_embedded() {
        let existing = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let absent = Path::new("/nonexistent/sesgate.toml");
        let both = env(&[("SESGATE_CONFIG", "/env.toml"), ("HOME", "/home/op")]);
        assert_eq!(
            Source::locate(Some(Path::new("/flag.toml")), &both, &existing),
            Source::Flag("/flag.toml".into())
        );
        assert_eq!(
            Source::locate(None, &both, &existing),
            Source::Environment("/env.toml".into())
        );
        let home = env(&[("SESGATE_CONFIG", ""), ("HOME", "/home/op")]);
        assert_eq!(
            Source::locate(None, &home, &existing),
            Source::System(existing.clone())
        );
        assert_eq!(
            Source::locate(None, &home, absent),
            Source::Embedded {
                state_dir: "/home/op/.local/state/sesgate".into()
            }
        );
    }

    #[test]
    fn state_dir_order() {
        let all = env(&[
            ("SESGATE_STATE_DIR", "/s"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(state_dir(&all), PathBuf::from("/s"));
        let xdg = env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(state_dir(&xdg), PathBuf::from("/x/sesgate"));
        let relative_xdg = env(&[("XDG_STATE_HOME", "x"), ("HOME", "/h")]);
        assert_eq!(
            state_dir(&relative_xdg),
            PathBuf::from("/h/.local/state/sesgate")
        );
        assert_eq!(state_dir(&env(&[])), PathBuf::from("sesgate-state"));
    }
}
