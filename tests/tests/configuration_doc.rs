//! docs/configuration.md against the code: for each function's section, the variables its
//! `Config::from_env` reads, which of them are required, and their defaults; and the template
//! parameters against `infra/template.yaml`. The page cannot rot: a variable added to a parser
//! fails here until it is documented, and so does a default changed on one side only.
//!
//! Which variables a parser reads is decided by behaviour, as in `template_env.rs`: a variable
//! is read if changing its value changes the parsed config (compared through its `Debug`
//! output) or makes it invalid. `Env` records no lookups, so the names to try come from a
//! static scan: every all-caps string literal in the sources under `crates/` (the constants
//! the parsers read, such as `"CLAIM_WAIT_SECS"`), plus every name the page documents. The scan
//! only proposes names; the parser decides. It covers the whole `crates/` tree, so modules can
//! move without touching this test. A variable whose name were assembled at run time (none
//! is) would escape it.
//!
//! Defaults are checked by feeding the documented default explicitly: the config must come
//! out exactly as it does with the variable unset.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Display};
use std::path::Path;
use warmpool_core::config::Env;
use yaml_serde::Value;

const DOC: &str = include_str!("../../docs/configuration.md");
const DOC_NAME: &str = "docs/configuration.md";
const TEMPLATE: &str = include_str!("../../infra/template.yaml");
/// The templates deployed on their own, with the section that lists what they take beyond (or
/// otherwise than) the full system's parameters.
const CHILD_TEMPLATES: [(&str, &str, &str); 2] = [
    (
        "infra/pool.yaml",
        include_str!("../../infra/pool.yaml"),
        "Pool template parameters",
    ),
    (
        "infra/batch.yaml",
        include_str!("../../infra/batch.yaml"),
        "Batch template parameters",
    ),
];
const SHARED: &str = "Shared settings";
const PARAMETERS: &str = "Template parameters";

type Parse = fn(&Env) -> Result<String, String>;
type Scenario = (&'static str, &'static [(&'static str, &'static str)]);

fn debug<T: Debug, E: Display>(parsed: Result<T, E>) -> Result<String, String> {
    parsed.map(|config| format!("{config:?}")).map_err(|e| e.to_string())
}

/// A function's section of the page, its parser, and the environments it is probed in. Some
/// variables are read only in some modes (the adaptive target's settings), so those modes get a
/// scenario of their own; a variable counts as read if it is read in any of them.
struct Function {
    section: &'static str,
    parse: Parse,
    scenarios: &'static [Scenario],
}

const DEFAULTS: &[Scenario] = &[("defaults", &[])];

const FUNCTIONS: [Function; 5] = [
    Function {
        section: "get-session",
        parse: |env| debug(get_session::Config::from_env(env)),
        scenarios: &[("defaults", &[]), ("leases", &[("LEASE_TABLE_NAME", "leases")])],
    },
    Function {
        section: "replenish",
        parse: |env| debug(replenish::Config::from_env(env)),
        scenarios: &[
            ("static target", &[]),
            (
                "scheduled target",
                &[
                    ("POOL_TARGET_MODE", "scheduled"),
                    ("POOL_TARGET_SCHEDULE", "Mon-Fri 08:00-18:00=50"),
                ],
            ),
            ("adaptive target", &[("POOL_TARGET_MODE", "adaptive")]),
            (
                "adaptive target with pre-warm windows",
                &[
                    ("POOL_TARGET_MODE", "adaptive"),
                    ("POOL_TARGET_SCHEDULE", "* *:09-*:30=900"),
                ],
            ),
            ("leases", &[("LEASE_TABLE_NAME", "leases")]),
        ],
    },
    Function {
        section: "invoker",
        parse: |env| debug(invoker::Config::from_env(env)),
        scenarios: DEFAULTS,
    },
    Function {
        section: "stale-batch-detector",
        parse: |env| debug(stale_batch_detector::Config::from_env(env)),
        scenarios: DEFAULTS,
    },
    Function {
        section: "document-agent",
        parse: |env| debug(document_agent::AgentConfig::from_env(env)),
        scenarios: DEFAULTS,
    },
];

/// Values that change any variable the parsers read: a word no number, switch or address
/// parses as, and a number for the string-valued ones.
const PROBES: [&str; 2] = ["x", "7"];

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Documented {
    /// `` `value` ``: used when the variable is unset ("empty" documents an empty string).
    Default(String),
    Required,
    /// Optional, without a default value.
    Unset,
}

impl Display for Documented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default(value) => write!(f, "the default `{value}`"),
            Self::Required => f.write_str("required"),
            Self::Unset => f.write_str("unset"),
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    name: String,
    documented: Documented,
    /// `docs/configuration.md:<line>`, and the shared group the row is in, if any.
    line: usize,
    group: Option<String>,
}

impl Row {
    fn at(&self) -> String {
        match &self.group {
            Some(group) => format!("{DOC_NAME}:{}, shared group `{group}`", self.line),
            None => format!("{DOC_NAME}:{}", self.line),
        }
    }
}

#[derive(Debug, Default)]
struct Section {
    rows: Vec<Row>,
    /// Headings of the shared groups this section names on its "Shared groups:" line.
    groups: Vec<String>,
    /// The first cell of each table header in this section.
    table_kinds: BTreeSet<String>,
}

/// The page, by `## ` heading; the shared groups by their `### ` heading under Shared settings.
#[derive(Debug, Default)]
struct Doc {
    sections: BTreeMap<String, Section>,
    groups: BTreeMap<String, Vec<Row>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|cell| cell.trim().to_string()).collect()
}

/// The text of the first `` `...` `` span, if the cell starts with one.
fn code_span(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.split('`').next()
}

fn documented(cell: &str, line: usize) -> Documented {
    if let Some(value) = code_span(cell) {
        Documented::Default(value.to_string())
    } else if cell.starts_with("required") {
        Documented::Required
    } else if cell.starts_with("unset") {
        Documented::Unset
    } else if cell == "empty" {
        Documented::Default(String::new())
    } else {
        panic!("{DOC_NAME}:{line}: the default {cell:?} is none of `value`, required, unset, empty")
    }
}

fn link_texts(text: &str) -> Vec<String> {
    text.split('[')
        .skip(1)
        .filter_map(|rest| rest.split_once("](").map(|(label, _)| label.to_string()))
        .collect()
}

fn parse_doc(text: &str) -> Doc {
    let mut doc = Doc::default();
    let (mut h2, mut h3) = (String::new(), String::new());
    let (mut fenced, mut in_groups) = (false, false);
    // The first header cell of the table being read; empty between tables.
    let mut kind = String::new();
    for (index, raw) in text.lines().enumerate() {
        let (line, number) = (raw.trim(), index + 1);
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            (h2, h3) = (heading.trim().to_string(), String::new());
            doc.sections.entry(h2.clone()).or_default();
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            h3 = heading.trim().to_string();
            continue;
        }
        let section = doc.sections.entry(h2.clone()).or_default();
        in_groups = line.starts_with("Shared groups:") || (in_groups && !line.is_empty());
        if in_groups {
            section.groups.extend(link_texts(line));
        }
        if !line.starts_with('|') {
            kind.clear();
            continue;
        }
        let row = cells(line);
        if kind.is_empty() {
            kind = row[0].clone();
            section.table_kinds.insert(kind.clone());
            continue;
        }
        if row[0].starts_with("---") || !(kind == "variable" || kind == "parameter") {
            continue;
        }
        let name = code_span(&row[0])
            .filter(|name| format!("`{name}`") == row[0])
            .unwrap_or_else(|| panic!("{DOC_NAME}:{number}: a row must name exactly one `VARIABLE`"));
        let row = Row {
            name: name.to_string(),
            documented: documented(row.get(1).map_or("", String::as_str), number),
            line: number,
            group: (h2 == SHARED).then(|| h3.clone()),
        };
        if h2 == SHARED {
            doc.groups.entry(h3.clone()).or_default().push(row);
        } else {
            section.rows.push(row);
        }
    }
    doc
}

impl Doc {
    /// Every variable a function section documents: its own rows and its groups' rows.
    fn variables(&self, section: &str) -> Result<BTreeMap<String, Row>, String> {
        let Some(found) = self.sections.get(section) else {
            return Err(format!("{DOC_NAME} has no section `## {section}`"));
        };
        let mut all = BTreeMap::new();
        let grouped = found.groups.iter().map(|group| {
            self.groups
                .get(group)
                .map(|rows| (format!("shared group `{group}`"), rows))
                .ok_or_else(|| format!("section `## {section}` names the shared group `{group}`, which has no `### {group}` under `## {SHARED}`"))
        });
        for source in std::iter::once(Ok(("its own table".to_string(), &found.rows))).chain(grouped) {
            let (origin, rows) = source?;
            for row in rows {
                if all.insert(row.name.clone(), row.clone()).is_some() {
                    return Err(format!(
                        "section `## {section}` lists {} twice (again in {origin}, line {})",
                        row.name, row.line
                    ));
                }
            }
        }
        Ok(all)
    }
}

// ---------------------------------------------------------------------------------------------
// The code
// ---------------------------------------------------------------------------------------------

/// `"NAME"` literals: upper-case letters, digits and underscores, starting with a letter.
fn literals_in(source: &str, found: &mut BTreeSet<String>) {
    for (start, _) in source.match_indices('"') {
        let rest = &source[start + 1..];
        let len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..len];
        if len >= 3 && rest[len..].starts_with('"') && name.starts_with(|c: char| c.is_ascii_uppercase()) {
            found.insert(name.to_string());
        }
    }
}

fn scan(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            scan(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            literals_in(&std::fs::read_to_string(&path).expect("readable source"), found);
        }
    }
}

/// Names worth probing: every all-caps literal in `crates/`, and every name the page lists.
fn candidates(doc: &Doc) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    scan(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates"), &mut found);
    let rows = doc.sections.values().flat_map(|s| &s.rows);
    found.extend(rows.chain(doc.groups.values().flatten()).map(|row| row.name.clone()));
    found
}

/// A value of the shape a required variable needs.
fn plausible(name: &str) -> &'static str {
    if name.ends_with("_ARN") {
        "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/doc_check-Ab12Cd34Ef"
    } else if name.ends_with("_URL") {
        "http://127.0.0.1:9/123456789012/doc-check"
    } else {
        "doc-check"
    }
}

type Vars = BTreeMap<String, String>;

fn env_of(vars: &Vars) -> Env {
    Env::from_pairs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn with(vars: &Vars, key: &str, value: Option<&str>) -> Vars {
    let mut changed = vars.clone();
    match value {
        Some(value) => changed.insert(key.to_string(), value.to_string()),
        None => changed.remove(key),
    };
    changed
}

/// One scenario of one function: the environment built from the page's required variables and
/// the scenario's settings, and what the parser makes of it.
struct Probe<'a> {
    function: &'a Function,
    scenario: &'static str,
    vars: Vars,
    baseline: String,
}

impl Probe<'_> {
    fn reads(&self, key: &str) -> bool {
        PROBES.iter().any(|probe| {
            (self.function.parse)(&env_of(&with(&self.vars, key, Some(probe)))) != Ok(self.baseline.clone())
        })
    }

    fn sets(&self, key: &str) -> bool {
        self.function
            .scenarios
            .iter()
            .any(|(name, settings)| *name == self.scenario && settings.iter().any(|(k, _)| *k == key))
    }
}

/// The probes of every scenario of `function`, or why there are none.
fn probes<'a>(function: &'a Function, documented: &BTreeMap<String, Row>) -> Result<Vec<Probe<'a>>, Vec<String>> {
    let required: Vars = documented
        .values()
        .filter(|row| row.documented == Documented::Required)
        .map(|row| (row.name.clone(), plausible(&row.name).to_string()))
        .collect();
    let (mut probes, mut failures) = (Vec::new(), Vec::new());
    for (scenario, settings) in function.scenarios {
        let mut vars = required.clone();
        vars.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        match (function.parse)(&env_of(&vars)) {
            Ok(baseline) => probes.push(Probe {
                function,
                scenario,
                vars,
                baseline,
            }),
            Err(error) => failures.push(format!(
                "section `## {}` ({scenario}): the code refuses an environment of the variables the section documents as required: {error}. If that names a variable, document it there as required (or extend plausible() in this test for its shape).",
                function.section
            )),
        }
    }
    if failures.is_empty() { Ok(probes) } else { Err(failures) }
}

/// Runs `check` for every function with its documented variables and probes, and fails with
/// every complaint at once, so that one run lists all the rows to fix.
fn each_function(mut check: impl FnMut(&Function, &BTreeMap<String, Row>, &[Probe], &mut Vec<String>)) {
    let doc = parse_doc(DOC);
    let mut failures = Vec::new();
    for function in &FUNCTIONS {
        let documented = match doc.variables(function.section) {
            Ok(documented) => documented,
            Err(failure) => {
                failures.push(failure);
                continue;
            }
        };
        match probes(function, &documented) {
            Ok(probes) => check(function, &documented, &probes, &mut failures),
            Err(more) => failures.extend(more),
        }
    }
    assert!(
        failures.is_empty(),
        "{DOC_NAME} is out of step with the code:\n- {}",
        failures.join("\n- ")
    );
}

/// Where two Debug outputs first differ, with some context, for a readable failure.
fn difference(a: &str, b: &str) -> String {
    let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let window = |s: &str| {
        let start = s.floor_char_boundary(at.saturating_sub(60));
        let end = s.ceil_char_boundary((at + 60).min(s.len()));
        s[start..end].to_string()
    };
    format!(
        "\n    with it:    ...{}...\n    without it: ...{}...",
        window(a),
        window(b)
    )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_variable_table_belongs_to_a_checked_section() {
    let doc = parse_doc(DOC);
    let checked: BTreeSet<&str> = FUNCTIONS.iter().map(|f| f.section).chain([SHARED]).collect();
    for (heading, section) in &doc.sections {
        assert!(
            !section.table_kinds.contains("variable") || checked.contains(heading.as_str()),
            "{DOC_NAME}: section `## {heading}` has a variable table this test does not check; add its function to FUNCTIONS"
        );
    }
    for function in &FUNCTIONS {
        assert!(
            doc.sections.contains_key(function.section),
            "{DOC_NAME} has no section `## {}`",
            function.section
        );
    }
}

#[test]
fn every_variable_the_code_reads_is_documented_in_its_section() {
    let doc = parse_doc(DOC);
    let names = candidates(&doc);
    each_function(|function, documented, probes, failures| {
        for name in &names {
            let reading: Vec<&str> = probes.iter().filter(|p| p.reads(name)).map(|p| p.scenario).collect();
            if !reading.is_empty() && !documented.contains_key(name) {
                failures.push(format!(
                    "section `## {}`: the code reads {name} ({}), but the section does not list it, nor do its shared groups",
                    function.section,
                    reading.join(", ")
                ));
            }
        }
    });
}

#[test]
fn every_documented_variable_is_read_by_its_function() {
    each_function(|function, documented, probes, failures| {
        for (name, row) in documented {
            if !probes.iter().any(|p| p.reads(name)) {
                let scenarios: Vec<&str> = probes.iter().map(|p| p.scenario).collect();
                failures.push(format!(
                    "section `## {}` lists {name} ({}), but the code never reads it (scenarios: {}). Misspelled, or read only in a mode this test has no scenario for?",
                    function.section,
                    row.at(),
                    scenarios.join(", ")
                ));
            }
        }
    });
}

#[test]
fn documented_defaults_and_required_variables_are_the_codes() {
    each_function(|function, documented, probes, failures| {
        for (name, row) in documented {
            let section = function.section;
            let at = row.at();
            for probe in probes.iter().filter(|p| p.reads(name)) {
                let scenario = probe.scenario;
                match &row.documented {
                    Documented::Default(value) if !probe.sets(name) => {
                        match (function.parse)(&env_of(&with(&probe.vars, name, Some(value)))) {
                            Ok(parsed) if parsed == probe.baseline => {}
                            Ok(parsed) => failures.push(format!(
                                "section `## {section}` ({at}): {name} is documented with the default `{value}`, but the code's default differs ({scenario}):{}",
                                difference(&parsed, &probe.baseline)
                            )),
                            Err(error) => failures.push(format!(
                                "section `## {section}` ({at}): {name} is documented with the default `{value}`, which the code refuses ({scenario}): {error}"
                            )),
                        }
                    }
                    Documented::Required => match (function.parse)(&env_of(&with(&probe.vars, name, None))) {
                        Err(error) if error.contains(name.as_str()) => {}
                        Err(error) => failures.push(format!(
                            "section `## {section}` ({at}): without {name} the code fails, but for another reason ({scenario}): {error}"
                        )),
                        Ok(_) => failures.push(format!(
                            "section `## {section}` ({at}): {name} is documented as required, but the code starts without it ({scenario}); document its default"
                        )),
                    },
                    _ => {}
                }
            }
        }
    });
}

/// The template's parameters: name and default (`None`: no default, so required).
fn template_parameters() -> BTreeMap<String, Option<String>> {
    parameters_of(TEMPLATE)
}

fn parameters_of(source: &str) -> BTreeMap<String, Option<String>> {
    let template: Value = yaml_serde::from_str(source).expect("a template is YAML");
    let scalar = |value: &Value| match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("a parameter default that is not a scalar: {other:?}"),
    };
    template["Parameters"]
        .as_mapping()
        .expect("the template has Parameters")
        .iter()
        .map(|(name, spec)| {
            let name = name.as_str().expect("parameter name").to_string();
            (name, spec.get("Default").map(scalar))
        })
        .collect()
}

#[test]
fn template_parameters_are_documented_with_the_templates_defaults() {
    let doc = parse_doc(DOC);
    let section = doc
        .sections
        .get(PARAMETERS)
        .unwrap_or_else(|| panic!("{DOC_NAME} has no section `## {PARAMETERS}`"));
    let documented: BTreeMap<&str, &Row> = section.rows.iter().map(|row| (row.name.as_str(), row)).collect();
    let mut failures = Vec::new();
    for (name, default) in template_parameters() {
        let Some(row) = documented.get(name.as_str()) else {
            failures.push(format!(
                "infra/template.yaml has the parameter {name}, which the section does not list"
            ));
            continue;
        };
        let expected = default.clone().map_or(Documented::Required, Documented::Default);
        if row.documented != expected {
            failures.push(format!(
                "{name} ({DOC_NAME}:{}): documented as {}, but the template says {expected}",
                row.line, row.documented
            ));
        }
    }
    let parameters = template_parameters();
    for row in &section.rows {
        if !parameters.contains_key(&row.name) {
            failures.push(format!(
                "{} ({DOC_NAME}:{}) is listed, but infra/template.yaml has no such parameter",
                row.name, row.line
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "section `## {PARAMETERS}` of {DOC_NAME} is out of step with infra/template.yaml:\n- {}",
        failures.join("\n- ")
    );
}

#[test]
fn the_pool_and_batch_templates_parameters_are_documented_with_their_defaults() {
    let doc = parse_doc(DOC);
    let full = parse_doc(DOC)
        .sections
        .remove(PARAMETERS)
        .expect("the full system's parameters");
    let full: BTreeMap<String, Row> = full.rows.into_iter().map(|row| (row.name.clone(), row)).collect();
    let full_parameters = template_parameters();
    let mut failures = Vec::new();
    for (file, source, heading) in CHILD_TEMPLATES {
        let Some(section) = doc.sections.get(heading) else {
            failures.push(format!("{DOC_NAME} has no section `## {heading}` for {file}"));
            continue;
        };
        let own: BTreeMap<&str, &Row> = section.rows.iter().map(|row| (row.name.as_str(), row)).collect();
        let parameters = parameters_of(source);
        for (name, default) in &parameters {
            let expected = default.clone().map_or(Documented::Required, Documented::Default);
            let row = own.get(name.as_str()).copied().or_else(|| full.get(name));
            match row {
                None => failures.push(format!(
                    "{file} has the parameter {name}, which neither `## {heading}` nor `## {PARAMETERS}` lists"
                )),
                Some(row) if row.documented != expected => failures.push(format!(
                    "{name} ({DOC_NAME}:{}): documented as {}, but {file} says {expected}",
                    row.line, row.documented
                )),
                Some(_) => {}
            }
        }
        for row in &section.rows {
            if !parameters.contains_key(&row.name) {
                failures.push(format!(
                    "{} ({DOC_NAME}:{}) is listed, but {file} has no such parameter",
                    row.name, row.line
                ));
            } else if full_parameters.get(&row.name) == parameters.get(&row.name) {
                failures.push(format!(
                    "{} ({DOC_NAME}:{}) is as in the full system: list it only in `## {PARAMETERS}`",
                    row.name, row.line
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{DOC_NAME} is out of step with the templates:\n- {}",
        failures.join("\n- ")
    );
}
