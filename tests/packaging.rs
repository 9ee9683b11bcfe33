//! The Debian package's definition (`[package.metadata.deb]` in Cargo.toml, `dist/debian/`):
//! every asset exists or is made by `sesgate generate-assets`, the man pages and completions
//! cover every subcommand, the packaged unit stays in step with `systemd/sesgate.service`, and the
//! shipped configuration is the production one without a demo user. `dist/deb-smoke.sh` (run by
//! `.ci/run`) builds, installs and exercises the real package.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sesgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sesgate"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sesgate-packaging-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn deb_metadata() -> toml::Table {
    let manifest: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// `(source, destination, mode)` of every asset.
fn assets() -> Vec<(String, String, String)> {
    deb_metadata()["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|asset| {
            let fields: Vec<String> = asset
                .as_array()
                .expect("assets are [source, destination, mode]")
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(fields.len(), 3, "{fields:?}");
            (fields[0].clone(), fields[1].clone(), fields[2].clone())
        })
        .collect()
}

/// The files a source names: a path, or a `*` in its last component.
fn matching(source: &Path) -> Vec<PathBuf> {
    let name = source.file_name().unwrap().to_str().unwrap();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![source.to_owned()]
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
    };
    let Ok(entries) = std::fs::read_dir(source.parent().unwrap()) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            p.is_file() && n.starts_with(prefix) && n.ends_with(suffix) && n.len() >= name.len() - 1
        })
        .collect()
}

/// The visible subcommands, as `sesgate --help` lists them.
fn subcommands() -> Vec<String> {
    let help = sesgate().arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(commands.len() >= 8, "{help}");
    commands
}

/// `sesgate generate-assets --out DIR`, as dist/build-deb.sh runs it.
fn generate_assets(dir: &Path) {
    let output = sesgate()
        .args(["generate-assets", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_asset_exists_or_is_generated() {
    let generated = temp_dir("assets");
    generate_assets(&generated);
    let mut destinations = Vec::new();
    for (source, destination, mode) in assets() {
        assert!(mode == "644" || mode == "755", "{source}: mode {mode}");
        let files = if source == "target/release/sesgate" {
            // cargo-deb's placeholder for the binary it builds (or finds, with --no-build).
            assert_eq!(destination, "usr/bin/");
            assert_eq!(mode, "755");
            continue;
        } else if let Some(rest) = source.strip_prefix("target/deb-assets/") {
            matching(&generated.join(rest))
        } else {
            assert!(!source.starts_with("target/"), "{source}: nothing makes it");
            matching(&root().join(&source))
        };
        assert!(!files.is_empty(), "asset {source} matches no file");
        assert!(
            !destination.starts_with('/'),
            "{destination}: cargo-deb wants it relative"
        );
        destinations.push(destination);
    }
    for expected in [
        "etc/sesgate/sesgate.toml",
        "etc/sesgate/policies/iam.toml",
        "usr/share/man/man1/",
        "usr/share/bash-completion/completions/sesgate",
        "usr/share/zsh/vendor-completions/_sesgate",
        "usr/share/fish/vendor_completions.d/sesgate.fish",
        "usr/share/sesgate/grafana/sesgate.json",
    ] {
        assert!(
            destinations.iter().any(|d| d == expected),
            "nothing installs {expected}"
        );
    }
    let deb = deb_metadata();
    let license = deb["license-file"].as_array().unwrap()[0].as_str().unwrap();
    assert!(root().join(license).is_file());
    let scripts = root().join(deb["maintainer-scripts"].as_str().unwrap());
    for script in ["postinst", "postrm"] {
        let text = std::fs::read_to_string(scripts.join(script)).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
        assert!(text.contains("set -e"), "{script}");
        // cargo-deb puts the systemd snippets at the token: exactly one, on its own line.
        assert_eq!(text.matches("#DEBHELPER#").count(), 1, "{script}");
        assert!(text.lines().any(|l| l == "#DEBHELPER#"), "{script}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(scripts.join(script))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is not executable");
    }
    let units = deb["systemd-units"].as_table().unwrap();
    let unit_dir = root().join(units["unit-scripts"].as_str().unwrap());
    assert!(unit_dir.join("sesgate.service").is_file());
    // The first install must not start a service whose configuration is not finished.
    assert_eq!(units["enable"].as_bool(), Some(false));
    assert_eq!(units["start"].as_bool(), Some(false));
    let _ = std::fs::remove_dir_all(&generated);
}

#[test]
fn man_pages_and_completions_cover_every_subcommand() {
    let dir = temp_dir("generated");
    generate_assets(&dir);
    let page = |name: &str| {
        std::fs::read_to_string(dir.join("man").join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("man page {name}.1: {e}"))
    };
    let main = page("sesgate");
    assert!(main.contains("\n.TH sesgate 1 "), "{main}");
    let commands = subcommands();
    for command in &commands {
        let text = page(&format!("sesgate-{command}"));
        assert!(text.contains(&format!(".TH sesgate-{command} 1")), "{text}");
        // roff writes a hyphen as `\-`.
        let listed = format!("sesgate\\-{}(1)", command.replace('-', "\\-"));
        assert!(main.contains(&listed), "sesgate.1 does not list {listed}");
    }
    // Nothing else: every page is sesgate.1, a subcommand's, or one of a subcommand's own
    // subcommands (`sesgate-queue-list.1`).
    for entry in std::fs::read_dir(dir.join("man")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let stem = name.strip_suffix(".1").expect("a section 1 page");
        assert!(
            stem == "sesgate"
                || commands.iter().any(|command| {
                    let page = format!("sesgate-{command}");
                    stem == page || stem.starts_with(&format!("{page}-"))
                }),
            "unexpected man page {name}"
        );
    }
    assert!(dir.join("man").join("sesgate-queue-list.1").is_file());
    for (file, shell) in [
        ("sesgate.bash", "bash"),
        ("_sesgate", "zsh"),
        ("sesgate.fish", "fish"),
    ] {
        let path = dir.join("completions").join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        for command in &commands {
            assert!(text.contains(command.as_str()), "{file} lacks {command}");
        }
        assert!(
            !text.contains("generate-assets"),
            "{file} offers the build-time command"
        );
        // Syntax-check with the shell itself where it is installed.
        match Command::new(shell).arg("-n").arg(&path).output() {
            Ok(output) => assert!(
                output.status.success(),
                "{shell} -n {file}: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(_) => eprintln!("notice: {shell} is not installed; not syntax-checking {file}"),
        }
    }
    // A directory it cannot write is an error, not a partial success.
    let blocked = dir.join("blocked");
    std::fs::write(&blocked, "a file, not a directory").unwrap();
    let output = sesgate()
        .args(["generate-assets", "--out"])
        .arg(&blocked)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sesgate: error: writing"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The unit's directives without comments, blank lines and the binary's directory.
fn directives(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.replace("/usr/local/bin/", "/usr/bin/"))
        .collect()
}

#[test]
fn the_packaged_unit_is_the_manual_one_with_a_system_user() {
    let manual = directives(&root().join("systemd/sesgate.service"));
    let packaged = directives(&root().join("dist/debian/sesgate.service"));
    // The manual install has no user to run as; the package creates `sesgate` and makes
    // /etc/sesgate its group's (so no ConfigurationDirectory), and documents its man page.
    let manual_only = ["DynamicUser=yes", "ConfigurationDirectory=sesgate"];
    let packaged_only = [
        "User=sesgate",
        "Group=sesgate",
        "RemoveIPC=yes",
        "StateDirectoryMode=0750",
        "Documentation=man:sesgate-serve(1) file:/usr/share/doc/sesgate/README.md",
    ];
    for line in manual_only {
        assert!(
            manual.iter().any(|l| l == line),
            "systemd/sesgate.service lacks {line}"
        );
    }
    for line in packaged_only {
        assert!(
            packaged.iter().any(|l| l == line),
            "the packaged unit lacks {line}"
        );
    }
    let common = |lines: &[String], drop: &[&str]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !drop.contains(&l.as_str()))
            .cloned()
            .collect()
    };
    assert_eq!(
        common(&manual, &manual_only),
        common(&packaged, &packaged_only),
        "dist/debian/sesgate.service and systemd/sesgate.service differ beyond the user"
    );
    // What DynamicUser=yes implies is there explicitly.
    for implied in [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictSUIDSGID=yes",
        "RemoveIPC=yes",
    ] {
        assert!(
            packaged.iter().any(|l| l == implied),
            "the packaged unit lacks {implied}"
        );
    }
    // The configuration's paths are the unit's: its credential and its state directory.
    let config = std::fs::read_to_string(root().join("systemd/sesgate.toml")).unwrap();
    assert!(packaged.contains(&"LoadCredential=upstream:/etc/sesgate/upstream-password".into()));
    assert!(config.contains("password_file = \"/run/credentials/sesgate.service/upstream\""));
    assert!(packaged.contains(&"StateDirectory=sesgate".into()));
    assert!(config.contains("certificate = \"/var/lib/sesgate/tls/sesgate.crt\""));
    assert!(
        packaged.contains(
            &"ExecStart=/usr/bin/sesgate serve --config /etc/sesgate/sesgate.toml".into()
        )
    );

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("notice: systemd-analyze is not installed; skipping `systemd-analyze verify`");
        return;
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(root().join("dist/debian/sesgate.service"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The binary and its man page are installed by the package only (deb-smoke.sh verifies the
    // installed unit in full); everything else must verify here.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("/usr/bin/sesgate") && !l.contains("sesgate-serve(1)"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(problems.is_empty(), "{stderr}");
}

/// The shipped configuration, moved to `dir` (policies, state) with `password_file` as given.
fn shipped_config(dir: &Path, password_file: &str) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (source, destination, _) in assets() {
        if let Some(name) = destination.strip_prefix("etc/sesgate/policies/") {
            std::fs::copy(root().join(&source), policies.join(name)).unwrap();
        }
    }
    let text = std::fs::read_to_string(root().join("systemd/sesgate.toml"))
        .unwrap()
        .replace("/etc/sesgate/policies", policies.to_str().unwrap())
        .replace("/var/lib/sesgate", dir.join("state").to_str().unwrap())
        .replace("/run/credentials/sesgate.service/upstream", password_file);
    let config = dir.join("sesgate.toml");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn the_shipped_configuration_is_production_without_users() {
    let iam = std::fs::read_to_string(root().join("dist/debian/iam.toml")).unwrap();
    let settings: Vec<&str> = iam
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    assert!(settings.is_empty(), "iam.toml ships settings: {settings:?}");
    assert!(iam.contains("# [[user]]") && iam.contains("sesgate hash-password"));
    let config = std::fs::read_to_string(root().join("systemd/sesgate.toml")).unwrap();
    assert!(
        config.contains("url = \"smtp://email-smtp.us-east-1.amazonaws.com:587?tls=required\"")
    );

    // Without the credential (outside the service): exit 2, the error on stderr naming it, and
    // a note saying why; nothing is written.
    let dir = temp_dir("shipped");
    let file = shipped_config(&dir, "/run/credentials/sesgate.service/upstream");
    let output = sesgate()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains(
            "error: upstream: password_file /run/credentials/sesgate.service/upstream: No such file"
        ),
        "{err}"
    );
    assert!(
        out.contains("is a systemd credential (LoadCredential)"),
        "{out}"
    );
    assert!(
        !dir.join("state").exists(),
        "check wrote the state directory"
    );

    // With it: valid, no users, and only the certificate warning (none is installed yet).
    let password = dir.join("upstream-password");
    std::fs::write(&password, "example\n").unwrap();
    let file = shipped_config(&dir, password.to_str().unwrap());
    let output = sesgate()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("0 error(s), 1 warning(s); 0 user(s)"), "{out}");
    assert!(
        out.contains("serve will generate a self-signed pair"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_license_is_the_apache_license_cargo_toml_names() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    assert!(license.contains("APPENDIX: How to apply the Apache License to your work."));
    assert_eq!(license.lines().count(), 202, "the full official text");
}
