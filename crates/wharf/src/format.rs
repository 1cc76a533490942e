//! Docker's `--format` for list and inspect commands: Go templates (through
//! `gtmpl`) with the functions Docker adds (`json`, `upper`, `lower`,
//! `title`, `split`, `join`, `pad`, `truncate`), `table` formats with a
//! header row and columns aligned as Go's tabwriter aligns them, and `json`
//! (one object per line).
//!
//! Rows and inspect results come in as JSON objects with Docker's field
//! names (`ID`, `Repository`, `State.Status`). An object whose keys all
//! start with an upper-case letter stands for a Go struct: a misspelt field
//! is an error, as in Docker. Other objects (labels, options) stand for Go
//! maps: a missing key prints `<no value>`.

use std::collections::HashMap;

use anyhow::{anyhow, Context};
use gtmpl::{Func, FuncError, Template, Value};

/// How a list command prints its rows (`--format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Format {
    /// The command's default table (`table`, or no `--format`).
    Table,
    /// `table TEMPLATE`: a header row, then the template per row, aligned.
    TableTemplate(String),
    /// A template rendered once per row, one line each.
    Template(String),
    /// `json`: each row as one JSON object per line.
    Json,
}

impl Format {
    /// Parses a `--format` value as Docker does: empty or `table` is the
    /// default table, `table …` a table of that template, `json` JSON lines,
    /// anything else a template. `\t` and `\n` written as two characters
    /// stand for a tab and a newline.
    pub(crate) fn parse(value: &str) -> Format {
        let value = value.trim();
        if value.is_empty() {
            return Format::Table;
        }
        if value == "json" {
            return Format::Json;
        }
        let unescape = |s: &str| s.replace("\\t", "\t").replace("\\n", "\n");
        match value.strip_prefix("table") {
            Some(rest) if rest.trim().is_empty() => Format::Table,
            Some(rest) => Format::TableTemplate(unescape(rest.trim())),
            None => Format::Template(unescape(value)),
        }
    }
}

/// Renders `rows` in `format`. `default_table` is the command's table
/// template (without the `table` word); `headers` maps field names to
/// their column headers (`ID` → `IMAGE ID`); a field it lacks is headed by
/// its name in capitals, words split (`CreatedAt` → `CREATED AT`).
///
/// # Errors
///
/// The template does not parse (`template parsing error: …`) or fails on a
/// row (a missing field, a function given the wrong arguments).
pub(crate) fn render_rows(
    format: &Format,
    default_table: &str,
    headers: &[(&str, &str)],
    rows: &[serde_json::Value],
) -> anyhow::Result<String> {
    let (text, table) = match format {
        Format::Json => {
            let mut out = String::new();
            for row in rows {
                out.push_str(&serde_json::to_string(row)?);
                out.push('\n');
            }
            return Ok(out);
        }
        Format::Table => (default_table, true),
        Format::TableTemplate(text) => (text.as_str(), true),
        Format::Template(text) => (text.as_str(), false),
    };
    let template = compile(text, FUNCTIONS)?;
    let mut out = String::new();
    if table {
        let header = compile(text, HEADER_FUNCTIONS)?;
        out.push_str(&execute(&header, header_context(text, headers, rows))?);
        out.push('\n');
    }
    for row in rows {
        out.push_str(&execute(&template, to_template_value(row))?);
        out.push('\n');
    }
    Ok(if table { tabwrite(&out) } else { out })
}

/// Renders one object with `template` (`inspect --format`), without a
/// trailing newline.
///
/// # Errors
///
/// As [`render_rows`].
pub(crate) fn render_value(template: &str, value: &serde_json::Value) -> anyhow::Result<String> {
    let template = compile(template, FUNCTIONS)?;
    execute(&template, to_template_value(value))
}

fn compile(text: &str, functions: &[(&str, Func)]) -> anyhow::Result<Template> {
    // An empty name makes errors read as Docker's: `template: :1: …`.
    let mut template = Template::with_name("");
    template.add_funcs(functions);
    template.add_func(GO_PRINT, go_print);
    template
        .parse(go_printed(text))
        .map_err(|e| anyhow!("{e}"))
        .context("template parsing error")?;
    Ok(template)
}

fn execute(template: &Template, data: Value) -> anyhow::Result<String> {
    template
        .render(&gtmpl::Context::from(data))
        .map_err(|e| anyhow!("{e}"))
        .context("execute template")
}

/// Go's tabwriter as Docker's formatter sets it up (min width 10, padding
/// 3, blanks): each tab-terminated cell is padded to its column's widest
/// cell plus 3, at least 10; the text after a line's last tab is not.
pub(crate) fn tabwrite(text: &str) -> String {
    const MIN_WIDTH: usize = 10;
    const PADDING: usize = 3;
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|line| line.split('\t').collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        // The last cell is not terminated by a tab: it is no column.
        for (column, cell) in cells.iter().take(cells.len() - 1).enumerate() {
            let width = (cell.chars().count() + PADDING).max(MIN_WIDTH);
            match widths.get_mut(column) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for cells in &lines {
        for (column, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if column + 1 < cells.len() {
                let pad = widths[column] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// What the header row is rendered from: each field the rows or the
/// template name, mapped to its header.
fn header_context(text: &str, headers: &[(&str, &str)], rows: &[serde_json::Value]) -> Value {
    let header_of = |field: &str| {
        headers
            .iter()
            .find(|(f, _)| *f == field)
            .map_or_else(|| default_header(field), |(_, h)| (*h).to_owned())
    };
    let mut context: HashMap<String, Value> = HashMap::new();
    if let Some(serde_json::Value::Object(first)) = rows.first() {
        for (field, value) in first {
            let header = match value {
                serde_json::Value::Object(nested) => Value::Map(
                    nested
                        .keys()
                        .map(|k| (k.clone(), Value::String(default_header(k))))
                        .collect(),
                ),
                _ => Value::String(header_of(field)),
            };
            context.insert(field.clone(), header);
        }
    }
    for field in template_fields(text) {
        context
            .entry(field.clone())
            .or_insert_with(|| Value::String(header_of(&field)));
    }
    Value::Map(context)
}

/// The `.Field` names a template uses (first element of each chain).
fn template_fields(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after.find("}}").unwrap_or(after.len());
        let action = &after[..close];
        let bytes = action.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let starts_field = b == b'.'
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
                && bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic);
            if starts_field {
                let name: String = action[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !fields.contains(&name) {
                    fields.push(name);
                }
            }
        }
        rest = &after[close..];
    }
    fields
}

/// `CreatedAt` → `CREATED AT`, `ID` → `ID`.
fn default_header(field: &str) -> String {
    let mut out = String::new();
    let mut previous_lower = false;
    for c in field.chars() {
        if c.is_uppercase() && previous_lower {
            out.push(' ');
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_uppercase());
    }
    out
}

fn to_template_value(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => {
            Value::Array(items.iter().map(to_template_value).collect())
        }
        serde_json::Value::Object(map) => {
            let converted: HashMap<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), to_template_value(v)))
                .collect();
            let is_struct = !map.is_empty()
                && map
                    .keys()
                    .all(|k| k.starts_with(|c: char| c.is_ascii_uppercase()));
            if is_struct {
                Value::Object(converted)
            } else {
                Value::Map(converted)
            }
        }
    }
}

fn to_json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => n
            .as_u64()
            .map(serde_json::Value::from)
            .or_else(|| n.as_i64().map(serde_json::Value::from))
            .or_else(|| n.as_f64().map(serde_json::Value::from))
            .unwrap_or(serde_json::Value::Null),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json_value).collect()),
        Value::Object(map) | Value::Map(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json_value(v)))
                .collect(),
        ),
    }
}

/// The function every printing action goes through (see [`go_printed`]).
const GO_PRINT: &str = "__wharf_print";

/// Rewrites each action that prints its pipeline, `{{P}}`, as
/// `{{__wharf_print (P)}}`, so that values print as Go's `%v` prints them
/// (`[a b]`, `map[k:v]`): gtmpl prints lists and maps with Rust's `Debug`.
/// Control actions (`if`, `range`, `end`…), comments and variable
/// declarations print nothing and stay as they are.
fn go_printed(text: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
    ];
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = action_end(after) else {
            // Unterminated: left for the parser to report.
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &after[..close];
        rest = &after[close + 2..];
        let (left_trim, body) = match inner.strip_prefix("- ") {
            Some(b) => ("- ", b),
            None => ("", inner),
        };
        let (body, right_trim) = match body.strip_suffix(" -") {
            Some(b) => (b, " -"),
            None => (body, ""),
        };
        let trimmed = body.trim();
        let first_word = trimmed
            .split(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or("");
        let declares = trimmed.starts_with('$')
            && trimmed.split_once('=').is_some_and(|(lhs, _)| {
                lhs.trim_end_matches(':')
                    .split(',')
                    .all(|v| v.trim().starts_with('$') && !v.trim().contains(' '))
            });
        if trimmed.is_empty()
            || trimmed.starts_with("/*")
            || KEYWORDS.contains(&first_word)
            || declares
        {
            out.push_str("{{");
            out.push_str(inner);
            out.push_str("}}");
        } else {
            out.push_str(&format!(
                "{{{{{left_trim}{GO_PRINT} ({trimmed}){right_trim}}}}}"
            ));
        }
    }
    out.push_str(rest);
    out
}

/// Where the action starting after `{{` ends (the index of its `}}`),
/// skipping quoted strings and raw strings.
fn action_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `__wharf_print`: its argument as Go's `fmt` prints it with `%v`.
fn go_print(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = arguments::<1>(GO_PRINT, args)?;
    Ok(Value::String(go_format(value)))
}

fn go_format(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        // Go prints map keys sorted; struct fields in declaration order,
        // which JSON does not keep: sorted too.
        Value::Map(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_format(&map[k])))
                .collect();
            format!("map[{}]", fields.join(" "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys.into_iter().map(|k| go_format(&map[k])).collect();
            format!("{{{}}}", fields.join(" "))
        }
        other => other.to_string(),
    }
}

/// Docker's template functions (cli/templates: basicFunctions).
const FUNCTIONS: &[(&str, Func)] = &[
    ("json", json),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("split", split),
    ("join", join),
    ("pad", pad),
    ("truncate", truncate),
];

/// The same names for the header row: each gives its first argument back,
/// so `{{upper .Names}}` is headed `NAMES` (cli/templates: HeaderFunctions).
const HEADER_FUNCTIONS: &[(&str, Func)] = &[
    ("json", first),
    ("upper", first),
    ("lower", first),
    ("title", first),
    ("split", first),
    ("join", first),
    ("pad", first),
    ("truncate", first),
];

fn arguments<'a, const N: usize>(
    name: &str,
    args: &'a [Value],
) -> Result<&'a [Value; N], FuncError> {
    args.try_into()
        .map_err(|_| FuncError::ExactlyXArgs(name.to_owned(), N))
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number_of(name: &str, value: &Value) -> Result<usize, FuncError> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| FuncError::Generic(format!("{name}: {n} is not a length"))),
        other => Err(FuncError::Generic(format!(
            "{name}: expected a number, got {other}"
        ))),
    }
}

fn first(args: &[Value]) -> Result<Value, FuncError> {
    args.first()
        .cloned()
        .ok_or_else(|| FuncError::AtLeastXArgs("header function".into(), 1))
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = arguments::<1>("json", args)?;
    serde_json::to_string(&to_json_value(value))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(format!("json: {e}")))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = arguments::<1>("upper", args)?;
    Ok(Value::String(text_of(value).to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = arguments::<1>("lower", args)?;
    Ok(Value::String(text_of(value).to_lowercase()))
}

/// Go's `strings.Title`: a letter after a separator (not a letter, digit
/// or underscore) in upper case.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let [value] = arguments::<1>("title", args)?;
    let mut out = String::new();
    let mut after_separator = true;
    for c in text_of(value).chars() {
        if after_separator {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        after_separator = !(c.is_alphanumeric() || c == '_');
    }
    Ok(Value::String(out))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let [value, separator] = arguments::<2>("split", args)?;
    let (value, separator) = (text_of(value), text_of(separator));
    let parts: Vec<Value> = if separator.is_empty() {
        value
            .chars()
            .map(|c| Value::String(c.to_string()))
            .collect()
    } else {
        value
            .split(separator.as_str())
            .map(|s| Value::String(s.to_owned()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let [items, separator] = arguments::<2>("join", args)?;
    let Value::Array(items) = items else {
        return Err(FuncError::Generic(format!(
            "join: expected a list, got {items}"
        )));
    };
    let parts: Vec<String> = items.iter().map(text_of).collect();
    Ok(Value::String(parts.join(&text_of(separator))))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let [value, prefix, suffix] = arguments::<3>("pad", args)?;
    let (prefix, suffix) = (number_of("pad", prefix)?, number_of("pad", suffix)?);
    Ok(Value::String(format!(
        "{}{}{}",
        " ".repeat(prefix),
        text_of(value),
        " ".repeat(suffix)
    )))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let [value, length] = arguments::<2>("truncate", args)?;
    let length = number_of("truncate", length)?;
    Ok(Value::String(text_of(value).chars().take(length).collect()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_print_as_go_prints_them() {
        let v = json!({
            "Config": {"Cmd": ["sleep", "100"], "Env": [], "Labels": {"b": "2", "a": "1"}},
            "Name": "x",
            "Count": 3
        });
        let render = |t: &str| render_value(t, &v).unwrap();
        assert_eq!(
            render("{{.Config.Cmd}} {{.Config.Env}} {{.Config.Labels}} {{.Count}}"),
            "[sleep 100] [] map[a:1 b:2] 3"
        );
        assert_eq!(render("{{json .Config.Cmd}}"), r#"["sleep","100"]"#);
        assert_eq!(
            render("{{range .Config.Cmd}}<{{.}}>{{end}}"),
            "<sleep><100>"
        );
        assert_eq!(
            render("{{- $c := .Config.Cmd -}} {{index $c 1}} {{len $c}}"),
            "100 2"
        );
        assert_eq!(
            render(r#"{{"}}"}} {{if .Name}}yes{{else}}no{{end}}{{/* a comment */}}"#),
            "}} yes"
        );
        assert_eq!(render("{{.Name | upper}} {{ .Name -}} !"), "X x!");
    }

    fn rows() -> Vec<serde_json::Value> {
        vec![
            json!({"ID": "0123456789ab", "Names": "web-1", "Image": "busybox", "Labels": {"tier": "front"}}),
            json!({"ID": "ba9876543210", "Names": "database", "Image": "postgres:16", "Labels": {}}),
        ]
    }

    const HEADERS: &[(&str, &str)] = &[("ID", "CONTAINER ID"), ("Names", "NAMES")];

    #[test]
    fn format_flag_values() {
        assert_eq!(Format::parse(""), Format::Table);
        assert_eq!(Format::parse("table"), Format::Table);
        assert_eq!(Format::parse("json"), Format::Json);
        assert_eq!(
            Format::parse(r"table {{.ID}}\t{{.Names}}"),
            Format::TableTemplate("{{.ID}}\t{{.Names}}".into())
        );
        assert_eq!(
            Format::parse("{{.Names}}"),
            Format::Template("{{.Names}}".into())
        );
    }

    #[test]
    fn table_has_headers_and_aligned_columns() {
        let out = render_rows(
            &Format::parse(r"table {{.ID}}\t{{.Image}}\t{{.Names}}"),
            "",
            HEADERS,
            &rows(),
        )
        .unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE         NAMES\n\
             0123456789ab   busybox       web-1\n\
             ba9876543210   postgres:16   database\n"
        );
    }

    #[test]
    fn default_table_and_min_width() {
        let rows = vec![json!({"A": "x", "B": "y", "CreatedAt": "now"})];
        let out =
            render_rows(&Format::Table, "{{.A}}\t{{.CreatedAt}}\t{{.B}}", &[], &rows).unwrap();
        // Go's tabwriter as Docker sets it up: columns at least 10 wide.
        assert_eq!(out, "A         CREATED AT   B\nx         now          y\n");
        let empty = render_rows(&Format::Table, "{{.ID}}\t{{.Names}}", HEADERS, &[]).unwrap();
        assert_eq!(empty, "CONTAINER ID   NAMES\n");
    }

    #[test]
    fn json_prints_one_object_per_line() {
        let out = render_rows(&Format::Json, "", HEADERS, &rows()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(lines[1]).unwrap(),
            rows()[1]
        );
    }

    #[test]
    fn plain_template_prints_a_line_per_row() {
        let out = render_rows(
            &Format::parse("{{.Names}}: {{.Image}}"),
            "",
            HEADERS,
            &rows(),
        )
        .unwrap();
        assert_eq!(out, "web-1: busybox\ndatabase: postgres:16\n");
        let none = render_rows(&Format::parse("{{.Names}}"), "", HEADERS, &[]).unwrap();
        assert_eq!(none, "");
    }

    #[test]
    fn json_function_and_nested_fields() {
        let inspect = json!({
            "Id": "abc",
            "State": {"Status": "running", "Pid": 42},
            "Config": {"Cmd": ["/bin/sh", "-c"], "Labels": {"a": "1"}}
        });
        assert_eq!(
            render_value("{{.State.Status}} {{.State.Pid}}", &inspect).unwrap(),
            "running 42"
        );
        assert_eq!(
            render_value("{{json .State}}", &inspect).unwrap(),
            r#"{"Pid":42,"Status":"running"}"#
        );
        assert_eq!(
            render_value("{{json .Config.Cmd}}", &inspect).unwrap(),
            r#"["/bin/sh","-c"]"#
        );
        assert_eq!(
            render_value(
                r#"{{index .Config.Labels "a"}}|{{.Config.Labels.b}}"#,
                &inspect
            )
            .unwrap(),
            "1|<no value>"
        );
        assert_eq!(
            render_value(r#"{{range .Config.Cmd}}[{{.}}]{{end}}"#, &inspect).unwrap(),
            "[/bin/sh][-c]"
        );
        assert_eq!(
            render_value(
                r#"{{if eq .State.Status "running"}}up{{else}}down{{end}}"#,
                &inspect
            )
            .unwrap(),
            "up"
        );
        assert_eq!(
            render_value(r#"{{printf "%s-%d" .Id .State.Pid}}"#, &inspect).unwrap(),
            "abc-42"
        );
        let all = render_value("{{json .}}", &inspect).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&all).unwrap(),
            inspect
        );
    }

    #[test]
    fn dockers_extra_functions() {
        let v = json!({"Name": "hello world", "Cmd": ["a", "b"], "Csv": "x,y"});
        let render = |t: &str| render_value(t, &v).unwrap();
        assert_eq!(render("{{upper .Name}}"), "HELLO WORLD");
        assert_eq!(render("{{lower (upper .Name)}}"), "hello world");
        assert_eq!(render("{{title .Name}}"), "Hello World");
        assert_eq!(render(r#"{{join .Cmd " "}}"#), "a b");
        assert_eq!(render(r#"{{join (split .Csv ",") "+"}}"#), "x+y");
        assert_eq!(render(r#"{{index (split .Csv ",") 1}}"#), "y");
        assert_eq!(render("[{{pad .Csv 1 2}}]"), "[ x,y  ]");
        assert_eq!(render("{{truncate .Name 5}}"), "hello");
    }

    #[test]
    fn header_row_ignores_functions() {
        let out = render_rows(
            &Format::parse(r"table {{upper .Names}}\t{{truncate .ID 4}}"),
            "",
            HEADERS,
            &rows(),
        )
        .unwrap();
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "NAMES      CONTAINER ID",
                "WEB-1      0123",
                "DATABASE   ba98"
            ]
        );
    }

    #[test]
    fn bad_templates_are_clear_errors() {
        let err = render_rows(&Format::parse("{{.Names"), "", HEADERS, &rows()).unwrap_err();
        let text = crate::chain(err.as_ref());
        assert!(
            text.starts_with("template parsing error: template: :"),
            "{text}"
        );
        let err = render_value("{{nosuchfunc .Id}}", &json!({"Id": "x"})).unwrap_err();
        assert!(
            crate::chain(err.as_ref()).starts_with("template parsing error: "),
            "{err:#}"
        );
        let err = render_rows(&Format::parse("{{.Nmaes}}"), "", HEADERS, &rows()).unwrap_err();
        let text = crate::chain(err.as_ref());
        assert!(text.starts_with("execute template: "), "{text}");
        assert!(text.contains("Nmaes"), "{text}");
    }

    #[test]
    fn headers_split_camel_case() {
        assert_eq!(default_header("CreatedAt"), "CREATED AT");
        assert_eq!(default_header("ID"), "ID");
        assert_eq!(default_header("RunningFor"), "RUNNING FOR");
        assert_eq!(
            template_fields("{{.ID}}\t{{json .State.Status}} {{ .Names }}"),
            ["ID", "State", "Names"]
        );
    }
}
