//! `docs/configuration.md` documents every key (issue 14 point 4). The key list is derived from
//! the code: the `Deserialize` structs of `src/config/`, their field names as serde reads them
//! (`rename` honored, `skip` left out, `from = "X"` read through X), nested per section. Each
//! key must be a row (`` | `key` | ``) of its section's table, under a heading naming the
//! section (`` `[limits]` ``, `` `[[listener]]` ``, `` `[[user.credentials]]` ``...).

use std::collections::BTreeMap;
use std::path::Path;

/// One field of a config struct, as the file spells it.
#[derive(Debug)]
struct Field {
    key: String,
    /// The config structs its type names (a nested table), if any.
    table: Option<String>,
}

/// A struct's fields as (key, type), and the struct it is read through (`from`), if any.
type Struct = (Vec<(String, String)>, Option<String>);

/// The `Deserialize` structs of `source` by name: their fields, or the struct they are read
/// through (`#[serde(from = "X")]`).
fn structs(source: &str) -> BTreeMap<String, Struct> {
    let mut found = BTreeMap::new();
    let mut attributes: Vec<String> = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.starts_with("#[") {
            attributes.push(line.to_owned());
            continue;
        }
        if line.starts_with("///") || line.starts_with("//") {
            continue;
        }
        let header = line
            .strip_prefix("pub struct ")
            .or_else(|| line.strip_prefix("struct "));
        let deserialized = attributes
            .iter()
            .any(|a| a.starts_with("#[derive(") && a.contains("Deserialize"));
        let from = attributes.iter().find_map(|a| quoted_after(a, "from = "));
        attributes.clear();
        let (Some(header), true) = (header, deserialized) else {
            continue;
        };
        let name = header.trim_end_matches('{').trim().to_owned();
        let mut fields = Vec::new();
        let mut field_attributes: Vec<String> = Vec::new();
        for line in lines.by_ref() {
            let line = line.trim();
            if line == "}" {
                break;
            }
            if line.starts_with("#[") {
                field_attributes.push(line.to_owned());
                continue;
            }
            if line.starts_with("//") || line.is_empty() {
                continue;
            }
            let declaration = line.strip_prefix("pub ").unwrap_or(line);
            let Some((ident, ty)) = declaration.split_once(':') else {
                continue;
            };
            let skipped = field_attributes
                .iter()
                .any(|a| a.contains("serde(skip)") || a.contains("serde(skip,"));
            let key = field_attributes
                .iter()
                .find_map(|a| quoted_after(a, "rename = "))
                .unwrap_or_else(|| ident.trim().to_owned());
            field_attributes.clear();
            if !skipped {
                fields.push((key, ty.trim().trim_end_matches(',').to_owned()));
            }
        }
        found.insert(name, (fields, from));
    }
    found
}

/// The string literal after `marker` in `attribute`.
fn quoted_after(attribute: &str, marker: &str) -> Option<String> {
    let rest = &attribute[attribute.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// Every key under `root`: (section path, key), the section of a top-level key being "".
fn keys(source: &str, root: &str) -> Vec<(String, String)> {
    let structs = structs(source);
    let mut out = Vec::new();
    let mut pending = vec![(String::new(), root.to_owned())];
    while let Some((section, name)) = pending.pop() {
        let (fields, from) = structs
            .get(&name)
            .unwrap_or_else(|| panic!("no Deserialize struct {name}"));
        if let Some(from) = from {
            pending.push((section, from.clone()));
            continue;
        }
        for field in fields.iter().map(|(key, ty)| Field {
            key: key.clone(),
            table: ty
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .find(|word| structs.contains_key(*word))
                .map(str::to_owned),
        }) {
            match field.table {
                Some(table) => {
                    let path = if section.is_empty() {
                        field.key
                    } else {
                        format!("{section}.{}", field.key)
                    };
                    pending.push((path, table));
                }
                None => out.push((section.clone(), field.key)),
            }
        }
    }
    out
}

/// The text of the section whose heading names `section` (`[x]` or `[[x]]` in backticks), or
/// for "" the one whose heading contains `root_heading`; up to the next heading.
fn section_text<'a>(doc: &'a str, section: &str, root_heading: &str) -> Option<&'a str> {
    let names = [format!("`[{section}]`"), format!("`[[{section}]]`")];
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        offset += line.len();
        if !line.starts_with('#') {
            continue;
        }
        let matches = if section.is_empty() {
            line.contains(root_heading)
        } else {
            names.iter().any(|n| line.contains(n.as_str()))
        };
        if matches {
            let body = &doc[offset..];
            let end = body
                .match_indices("\n#")
                .next()
                .map_or(body.len(), |(i, _)| i);
            return Some(&body[..end]);
        }
    }
    None
}

/// The keys of `source` (from struct `root`) the reference lacks, as `section.key`.
fn undocumented(source: &str, root: &str, doc: &str, root_heading: &str) -> Vec<String> {
    keys(source, root)
        .into_iter()
        .filter(|(section, key)| {
            let row = format!("| `{key}` |");
            !section_text(doc, section, root_heading)
                .is_some_and(|text| text.lines().any(|l| l.starts_with(&row)))
        })
        .map(|(section, key)| format!("{section}.{key}"))
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn every_sesgate_toml_key_is_documented() {
    let source = read("src/config/mod.rs");
    let doc = read("docs/configuration.md");
    let all = keys(&source, "Config");
    // The derivation itself sees the keys the issue names, nested where the file nests them.
    for expected in [
        ("", "hostname"),
        ("account", "default_configuration_sets"),
        ("limits", "max_message_bytes"),
        ("tls", "private_key"),
        ("listener", "client_ca"),
        ("metrics", "per_user"),
        ("log", "recipients"),
    ] {
        assert!(
            all.iter()
                .any(|(s, k)| (s.as_str(), k.as_str()) == expected),
            "{expected:?} not derived from the code: {all:?}"
        );
    }
    assert!(!all.iter().any(|(_, k)| k == "base_dir" || k == "embedded"));
    assert!(all.len() >= 55, "{}", all.len());
    let missing = undocumented(&source, "Config", &doc, "Top level");
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks: {missing:?}"
    );
}

#[test]
fn every_iam_toml_key_is_documented() {
    let source = read("src/config/iam.rs");
    let doc = read("docs/configuration.md");
    let all = keys(&source, "IamFile");
    for expected in [
        ("group", "inline_policies"),
        ("user", "permissions_boundary"),
        ("user", "client_certificates"),
        ("user.credentials", "password_hash"),
    ] {
        assert!(
            all.iter()
                .any(|(s, k)| (s.as_str(), k.as_str()) == expected),
            "{expected:?} not derived from the code: {all:?}"
        );
    }
    assert!(!all.iter().any(|(_, k)| k == "source"));
    let missing = undocumented(&source, "IamFile", &doc, "`iam.toml`");
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks: {missing:?}"
    );
}

/// The check catches a new key: a field added to a struct, a renamed one, and leaves skipped
/// ones alone.
#[test]
fn a_new_undocumented_key_is_caught() {
    let source = r#"
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    pub hostname: String,
    /// Doc comment.
    #[serde(rename = "listener")]
    pub listeners: Vec<Listener>,
    #[serde(skip)]
    pub base_dir: PathBuf,
}
#[derive(Debug, Deserialize)]
pub struct Listener {
    pub address: SocketAddr,
    #[serde(rename = "new_key")]
    pub brand_new: bool,
}
"#;
    let doc = "### Top level\n| `hostname` | x |\n### `[[listener]]`\n| `address` | x |\n";
    assert_eq!(
        undocumented(source, "Config", doc, "Top level"),
        ["listener.new_key"]
    );
    let doc = "### Top level\n| `hostname` | x |\n| `new_key` | x |\n### `[[listener]]`\n| `address` | x |\n";
    assert_eq!(
        undocumented(source, "Config", doc, "Top level"),
        ["listener.new_key"],
        "a key documented in another section does not count"
    );
}

/// The README points into the repository, not to files beside it.
#[test]
fn readme_refers_to_no_file_outside_the_repository() {
    let readme = read("README.md");
    for outside in ["../shared", "SPEC.md", "ses-iam-facts.md"] {
        assert!(!readme.contains(outside), "README mentions {outside}");
    }
    assert!(readme.contains("docs/configuration.md"));
}

/// The `toml` blocks of the reference, in order, from `start` to `end` (headings).
fn examples(doc: &str, start: &str, end: Option<&str>) -> String {
    let from = doc.find(start).unwrap();
    let to = end.map_or(doc.len(), |end| doc.find(end).unwrap());
    doc[from..to]
        .split("```toml\n")
        .skip(1)
        .map(|block| &block[..block.find("```").unwrap()])
        .collect()
}

/// The examples are real: together they are one `sesgate.toml` and one `iam.toml` that parse.
#[test]
fn the_reference_examples_parse() {
    let doc = read("docs/configuration.md");
    let server = examples(&doc, "## `sesgate.toml`", Some("## `iam.toml`"));
    let config = sesgate::config::Config::parse(Path::new("example.toml"), &server)
        .unwrap_or_else(|e| panic!("{e}\n{server}"));
    assert!(config.metrics.per_user && config.log.recipients);
    let iam = examples(&doc, "## `iam.toml`", None);
    let file = sesgate::config::iam::IamFile::parse(Path::new("iam.toml"), &iam)
        .unwrap_or_else(|e| panic!("{e}\n{iam}"));
    assert_eq!(file.users[0].credentials.len(), 1);
}
