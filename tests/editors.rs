//! The schema as real editors use it: Taplo (the engine of Even Better TOML) and
//! yaml-language-server, driven as processes exactly as an editor drives them.
//!
//! The `jsonschema` crate accepts shapes these tools mishandle (Taplo overflows its
//! stack on `allOf: [{$ref}]`, both offer `null` from `anyOf [T, null]`), so the
//! schema is proven here with the tools themselves: `taplo lint` must name each
//! planted problem of a broken spec, and a completion request at the top level and
//! inside a service table must return the real keys from both language servers.
//!
//! Without the tools these tests print `skipped: needs …` and pass, unless
//! `CONTAINER_TEST_EDITORS=1` is set (CI, after `.ci/editors.sh`): then a missing
//! tool fails. Every wait is bounded, so a crashing or hanging server fails fast.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn schema_path() -> PathBuf {
    root().join("schema/container.schema.json")
}

fn schema_url() -> String {
    format!("file://{}", schema_path().display())
}

/// The tool's path, or `None` (after printing why) when it is missing and the
/// editor tier is not required.
fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    let required = std::env::var("CONTAINER_TEST_EDITORS").is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "CONTAINER_TEST_EDITORS is set but `{name}` is not installed ({install}; see .ci/editors.sh)");
    eprintln!("skipped: needs {name} ({install})");
    None
}

/// Run a program to its end, killing it after `WAIT`.
fn run_bounded(cmd: &mut Command) -> (Option<i32>, String, String) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > WAIT {
            child.kill().ok();
            panic!("{cmd:?} did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), t_out.join().unwrap_or_default(), t_err.join().unwrap_or_default())
}

// ---------------------------------------------------------------------------------
// taplo lint

/// One diagnostic of `taplo lint`: its message and the line (1-based) it points at.
#[derive(Debug)]
struct LintError {
    message: String,
    line: usize,
}

/// Parse taplo's codespan output: `error: <message>` followed (some lines later) by
/// `┌─ <file>:<line>:<col>`. Messages may span several lines up to the arrow.
fn lint_errors(stderr: &str) -> Vec<LintError> {
    let plain = strip_ansi(stderr);
    let mut errors = Vec::new();
    let mut current: Option<String> = None;
    for l in plain.lines() {
        if let Some(rest) = l.trim_start().strip_prefix("error: ") {
            current = Some(rest.to_string());
            continue;
        }
        if let Some(msg) = current.as_mut() {
            if let Some(pos) = l.find("┌─") {
                let loc = l[pos + "┌─".len()..].trim();
                let line = loc.rsplit(':').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                errors.push(LintError { message: current.take().unwrap_or_default(), line });
            } else {
                msg.push('\n');
                msg.push_str(l);
            }
        }
    }
    errors
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The planted problems of a fixture: (line, key, marker) for every `# P<n>` line
/// (1-based lines; the key is what precedes `=` or `:`).
fn planted(text: &str) -> Vec<(usize, String, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let marker = l.split("# ").nth(1)?.split_whitespace().next()?.to_string();
            if !marker.starts_with('P') || l.trim_start().starts_with('#') {
                return None;
            }
            let key = l.split(['=', ':']).next()?.trim().trim_start_matches("- ").to_string();
            Some((i + 1, key, marker))
        })
        .collect()
}

#[test]
fn taplo_lint_names_each_planted_problem() {
    let Some(taplo) = tool("taplo", "cargo install taplo-cli --locked") else { return };
    let fixture = root().join("tests/fixtures/editors/broken.toml");
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    let problems = planted(&text);
    assert!(problems.len() >= 10, "the fixture lost its planted problems: {problems:?}");
    let (code, stdout, stderr) = run_bounded(
        Command::new(&taplo)
            .args(["lint", "--no-auto-config", "--schema", &schema_url()])
            .arg(&fixture)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "error"),
    );
    assert_ne!(code, Some(0), "taplo lint accepted the broken fixture:\n{stdout}{stderr}");
    let errors = lint_errors(&stderr);
    eprintln!("taplo lint: {} errors for {} planted problems", errors.len(), problems.len());
    for e in &errors {
        eprintln!("  line {}: {}", e.line, e.message.lines().next().unwrap_or(""));
    }
    // An error whose message is a whole table (`{"port":"3306",…} is not valid under
    // any of the schemas…`, what a failed `anyOf [T, null]` gives) is repeated on
    // every line of the table and names none of its problems: it does not count.
    let dumps_a_table = |e: &LintError| e.message.trim_start().starts_with('{');
    let mut missing = Vec::new();
    for (line, key, marker) in &problems {
        if !errors.iter().any(|e| e.line == *line && !dumps_a_table(e)) {
            missing.push(format!("{marker} (line {line}, `{key}`)"));
        }
    }
    let dumps = errors.iter().filter(|e| dumps_a_table(e)).count();
    assert!(
        missing.is_empty() && dumps == 0,
        "taplo lint does not name every planted problem.\nnot named: {missing:?}\nmessages dumping a table: {dumps}\nall output:\n{stderr}"
    );
    // Nothing but the planted problems: each error points at a planted line, or
    // names a planted key (Taplo repeats an unknown key's error on the implicit
    // parent tables, which it places at the top of the file).
    let stray: Vec<&LintError> = errors
        .iter()
        .filter(|e| !problems.iter().any(|(l, key, _)| *l == e.line || e.message.contains(&format!("'{key}'"))))
        .collect();
    assert!(stray.is_empty(), "errors on lines without a planted problem: {stray:#?}");
}

#[test]
fn taplo_lint_accepts_the_shipped_specs() {
    let Some(taplo) = tool("taplo", "cargo install taplo-cli --locked") else { return };
    let mut files: Vec<PathBuf> = ["specs", "examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root().join(d)).expect("dir").map(|e| e.expect("entry").path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.push(root().join("tests/fixtures/same.toml"));
    let (code, stdout, stderr) = run_bounded(
        Command::new(&taplo)
            .args(["lint", "--no-auto-config", "--schema", &schema_url()])
            .args(&files)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "error"),
    );
    assert_eq!(code, Some(0), "taplo lint rejects a shipped spec:\n{stdout}{stderr}");
}

// ---------------------------------------------------------------------------------
// A minimal LSP client over stdio.

struct Lsp {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    inbox: Receiver<Value>,
    next_id: i64,
    /// Answers to `workspace/configuration`, per section.
    settings: Value,
}

impl Lsp {
    fn start(name: &'static str, program: &Path, args: &[&str], settings: Value) -> Lsp {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env("RUST_LOG", "error")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, inbox) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut header = String::new();
                    match r.read_line(&mut header) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some(v) = header.strip_prefix("Content-Length:") {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
                let Some(len) = len else { return };
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        Lsp { name, child, stdin, inbox, next_id: 1, settings }
    }

    fn send(&mut self, msg: Value) {
        let body = serde_json::to_string(&msg).expect("json");
        let framed = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        if let Err(e) = self.stdin.write_all(framed.as_bytes()).and_then(|_| self.stdin.flush()) {
            let status = self.child.try_wait().ok().flatten();
            panic!("{} is gone (exit: {status:?}): {e}", self.name);
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Send a request and wait (bounded) for its answer, answering the server's own
    /// requests meanwhile. A server that dies or hangs fails the test.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match self.inbox.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => panic!("{}: no answer to {method} within {WAIT:?}", self.name),
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(200));
                    let status = self.child.try_wait().ok().flatten();
                    panic!("{} crashed while answering {method} (exit: {status:?})", self.name)
                }
            };
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                if let Some(err) = msg.get("error") {
                    panic!("{}: {method} failed: {err}", self.name);
                }
                return msg.get("result").cloned().unwrap_or(Value::Null);
            }
            if let (Some(sid), Some(m)) = (msg.get("id").cloned(), msg.get("method").and_then(Value::as_str)) {
                let result = match m {
                    "workspace/configuration" => {
                        let items = msg["params"]["items"].as_array().cloned().unwrap_or_default();
                        Value::Array(
                            items
                                .iter()
                                .map(|it| {
                                    let section = it.get("section").and_then(Value::as_str).unwrap_or("");
                                    section
                                        .split('.')
                                        .filter(|s| !s.is_empty())
                                        .try_fold(&self.settings, |v, k| v.get(k))
                                        .cloned()
                                        .unwrap_or(Value::Null)
                                })
                                .collect(),
                        )
                    }
                    _ => Value::Null,
                };
                self.send(json!({"jsonrpc": "2.0", "id": sid, "result": result}));
            }
        }
    }

    /// Wait (bounded) for the server's `textDocument/publishDiagnostics` for `uri`
    /// that `done` accepts, answering its requests meanwhile; the last one seen.
    fn diagnostics(&mut self, uri: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut last = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match self.inbox.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => return last,
                Err(RecvTimeoutError::Disconnected) => panic!("{} crashed while checking {uri}", self.name),
            };
            if msg.get("method").and_then(Value::as_str) == Some("textDocument/publishDiagnostics")
                && msg["params"]["uri"] == uri
            {
                last = msg["params"]["diagnostics"].as_array().cloned().unwrap_or_default();
                if done(&last) {
                    return last;
                }
            } else if let (Some(sid), Some(_)) = (msg.get("id").cloned(), msg.get("method")) {
                self.send(json!({"jsonrpc": "2.0", "id": sid, "result": Value::Null}));
            }
        }
    }

    fn open(&mut self, uri: &str, language: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}),
        );
    }

    /// Completion items at (line, character), 0-based.
    fn complete(&mut self, uri: &str, line: usize, character: usize) -> Vec<Value> {
        let r = self.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
        );
        match r {
            Value::Array(items) => items,
            Value::Object(ref o) => o.get("items").and_then(Value::as_array).cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Hover text at (line, character), 0-based.
    fn hover(&mut self, uri: &str, line: usize, character: usize) -> String {
        let r = self.request(
            "textDocument/hover",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
        );
        match r.get("contents") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => o.get("value").and_then(Value::as_str).unwrap_or("").to_string(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().or_else(|| x.get("value").and_then(Value::as_str)).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }

    fn shutdown(mut self) {
        let _ = self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Lsp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Initialize with `workspace` as the one workspace folder (Taplo ignores documents
/// outside its workspace).
fn initialize(lsp: &mut Lsp, workspace: &Path, options: Value) {
    let root_uri = format!("file://{}", workspace.display());
    lsp.request(
        "initialize",
        json!({
            "processId": std::process::id(),
            "rootUri": root_uri,
            "workspaceFolders": [{"uri": root_uri, "name": "container"}],
            "initializationOptions": options,
            "capabilities": {
                "workspace": {"configuration": true, "workspaceFolders": true},
                "textDocument": {
                    "completion": {"completionItem": {"snippetSupport": true, "documentationFormat": ["markdown", "plaintext"]}},
                    "hover": {"contentFormat": ["markdown", "plaintext"]}
                }
            }
        }),
    );
    lsp.notify("initialized", json!({}));
}

fn labels(items: &[Value]) -> Vec<String> {
    items.iter().filter_map(|i| i.get("label").and_then(Value::as_str)).map(str::to_string).collect()
}

fn documentation(items: &[Value], label: &str) -> String {
    let Some(item) = items.iter().find(|i| i.get("label").and_then(Value::as_str) == Some(label)) else {
        return String::new();
    };
    match item.get("documentation") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("value").and_then(Value::as_str).unwrap_or("").to_string(),
        _ => String::new(),
    }
}

/// Descriptions are prose: editors re-flow paragraphs, so a line break inside one
/// (from a wrapped doc comment) shows as a ragged break. Paragraph breaks stay.
fn assert_no_hard_breaks(what: &str, items: &[Value]) {
    for l in labels(items) {
        let doc = documentation(items, &l);
        assert!(!doc.replace("\n\n", "").contains('\n'), "{what}: the text of `{l}` has a hard line break: {doc:?}");
    }
}

fn assert_has(what: &str, got: &[String], want: &[&str]) {
    let missing: Vec<&&str> = want.iter().filter(|w| !got.iter().any(|g| g == *w)).collect();
    assert!(missing.is_empty(), "{what}: missing {missing:?}; got {} items: {got:?}", got.len());
}

/// A document position: the (line, character) of the `|` marker, and the text without it.
fn cursor(text: &str) -> (String, usize, usize) {
    let (before, _) = text.split_once('|').expect("a | marks the cursor");
    let line = before.matches('\n').count();
    let character = before.rsplit('\n').next().unwrap_or("").chars().count();
    (text.replacen('|', "", 1), line, character)
}

// ---------------------------------------------------------------------------------
// Taplo's language server (`taplo lsp stdio`, as Even Better TOML runs it).

fn taplo_complete(doc: &str, want: &[&str]) -> Vec<Value> {
    let Some(taplo) = tool("taplo", "cargo install taplo-cli --locked") else { return Vec::new() };
    let settings = json!({"evenBetterToml": {
        "schema": {"enabled": true, "associations": {}, "links": false},
        "completion": {"maxKeys": 5},
        "formatter": {}
    }});
    let mut lsp = Lsp::start("taplo lsp", &taplo, &["lsp", "stdio"], settings);
    let dir = tempfile::tempdir().expect("tempdir");
    initialize(&mut lsp, dir.path(), json!({"configurationSection": "evenBetterToml"}));
    let uri = format!("file://{}/spec.toml", dir.path().display());
    let (text, line, character) = cursor(&format!("#:schema {}\n{doc}", schema_url()));
    lsp.open(&uri, "toml", &text);
    // Taplo loads the schema in the background: ask until real items come (bounded).
    let deadline = Instant::now() + WAIT;
    let mut items = lsp.complete(&uri, line, character);
    while !want.iter().all(|w| labels(&items).iter().any(|l| l == w)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        items = lsp.complete(&uri, line, character);
    }
    lsp.shutdown();
    let got = labels(&items);
    eprintln!("taplo completion: {} items: {got:?}", got.len());
    assert_has("taplo completion", &got, want);
    assert_no_hard_breaks("taplo completion", &items);
    items
}

#[test]
fn taplo_completes_the_top_level() {
    let items = taplo_complete("name = \"demo\"\n|\n", &["base", "packages", "network", "services"]);
    if items.is_empty() {
        return;
    }
    let doc = documentation(&items, "base");
    assert!(doc.contains("Base system"), "taplo shows the generic text for `base`, not the field's: {doc:?}");
}

#[test]
fn taplo_completes_inside_a_service_table() {
    taplo_complete("name = \"demo\"\n\n[services.mysql]\nport = 3306\n|\n", &["databases", "users", "bind_address"]);
}

#[test]
fn taplo_completes_values_with_their_own_docs() {
    let items = taplo_complete("name = \"demo\"\n[network]\nmode = |\n", &["\"routed\"", "\"none\"", "\"host\""]);
    if items.is_empty() {
        return;
    }
    let doc = documentation(&items, "\"routed\"");
    assert!(doc.contains("veth"), "the value `routed` comes without its own text: {doc:?}");
}

#[test]
fn taplo_completes_a_table_header() {
    // In a header Taplo offers whole table paths.
    taplo_complete("name = \"demo\"\n\n[services.|]\n", &["services.mysql", "services.caddy", "services.php"]);
}

// ---------------------------------------------------------------------------------
// yaml-language-server (as VS Code's YAML extension, Neovim and Helix run it).

fn yaml_complete(doc: &str, want: &[&str]) -> Vec<Value> {
    let Some(yls) = tool("yaml-language-server", "npm install -g yaml-language-server") else { return Vec::new() };
    let settings = json!({
        "yaml": {"validate": true, "hover": true, "completion": true, "schemaStore": {"enable": false}, "schemas": {}},
        "http": {"proxy": "", "proxyStrictSSL": false},
        "editor": {"tabSize": 2}
    });
    let mut lsp = Lsp::start("yaml-language-server", &yls, &["--stdio"], settings.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    initialize(&mut lsp, dir.path(), json!({}));
    lsp.notify("workspace/didChangeConfiguration", json!({"settings": settings}));
    let uri = format!("file://{}/spec.yaml", dir.path().display());
    let (text, line, character) = cursor(&format!("# yaml-language-server: $schema={}\n{doc}", schema_url()));
    lsp.open(&uri, "yaml", &text);
    let items = lsp.complete(&uri, line, character);
    lsp.shutdown();
    let got = labels(&items);
    eprintln!("yaml-language-server completion: {} items: {got:?}", got.len());
    assert_has("yaml-language-server completion", &got, want);
    assert!(
        !got.iter().any(|l| l == "null"),
        "yaml-language-server offers `null`, which TOML and the parser refuse: {got:?}"
    );
    assert_no_hard_breaks("yaml-language-server completion", &items);
    items
}

#[test]
fn yaml_language_server_completes_the_top_level() {
    let items = yaml_complete("name: demo\n|\n", &["base", "packages", "network", "services"]);
    if items.is_empty() {
        return;
    }
    let doc = documentation(&items, "base");
    assert!(
        doc.contains("Base system"),
        "yaml-language-server shows the generic text for `base`, not the field's: {doc:?}"
    );
}

#[test]
fn yaml_language_server_completes_inside_a_service_table() {
    yaml_complete("name: demo\nservices:\n  mysql:\n    port: 3306\n    |\n", &["databases", "users", "bind_address"]);
}

#[test]
fn yaml_language_server_completes_values_without_null() {
    let items = yaml_complete("name: demo\nnetwork:\n  mode: |\n", &["routed", "none", "host"]);
    if items.is_empty() {
        return;
    }
    // Each value with its own documentation.
    let doc = documentation(&items, "routed");
    assert!(doc.contains("veth"), "the value `routed` comes without its own text: {doc:?}");
}

#[test]
fn yaml_language_server_hover_shows_the_fields_own_text() {
    let Some(yls) = tool("yaml-language-server", "npm install -g yaml-language-server") else { return };
    let settings = json!({
        "yaml": {"validate": true, "hover": true, "completion": true, "schemaStore": {"enable": false}, "schemas": {}},
    });
    let mut lsp = Lsp::start("yaml-language-server", &yls, &["--stdio"], settings.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    initialize(&mut lsp, dir.path(), json!({}));
    lsp.notify("workspace/didChangeConfiguration", json!({"settings": settings}));
    let uri = format!("file://{}/spec.yaml", dir.path().display());
    let text =
        format!("# yaml-language-server: $schema={}\nname: demo\nservices:\n  mysql:\n    port: 3306\n", schema_url());
    lsp.open(&uri, "yaml", &text);
    // The field's own description, not the one of its type (`Name`, `Port`).
    let name = lsp.hover(&uri, 1, 1);
    let port = lsp.hover(&uri, 4, 5);
    lsp.shutdown();
    assert!(name.contains("Container name"), "hover on `name` shows: {name:?}");
    assert!(port.contains("TCP port the server listens on"), "hover on mysql `port` shows: {port:?}");
}

#[test]
fn yaml_language_server_reports_each_planted_problem() {
    let Some(yls) = tool("yaml-language-server", "npm install -g yaml-language-server") else { return };
    let fixture = root().join("tests/fixtures/editors/broken.yaml");
    let body = std::fs::read_to_string(&fixture).expect("fixture");
    let problems = planted(&body);
    assert!(problems.len() >= 10, "the fixture lost its planted problems: {problems:?}");
    let settings = json!({"yaml": {"validate": true, "schemaStore": {"enable": false}, "schemas": {}}});
    let mut lsp = Lsp::start("yaml-language-server", &yls, &["--stdio"], settings.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    initialize(&mut lsp, dir.path(), json!({}));
    lsp.notify("workspace/didChangeConfiguration", json!({"settings": settings}));
    let uri = format!("file://{}/broken.yaml", dir.path().display());
    // The modeline goes first; the fixture's lines move down by one.
    lsp.open(&uri, "yaml", &format!("# yaml-language-server: $schema={}\n{body}", schema_url()));
    let line_of = |d: &Value| d["range"]["start"]["line"].as_u64().unwrap_or(0) as usize; // 0-based = fixture's 1-based
    let named = |ds: &[Value], line: usize| ds.iter().any(|d| line_of(d) == line);
    let diags = lsp.diagnostics(&uri, |ds| problems.iter().all(|(l, _, _)| named(ds, *l)));
    lsp.shutdown();
    eprintln!("yaml-language-server: {} diagnostics for {} planted problems", diags.len(), problems.len());
    for d in &diags {
        eprintln!("  line {}: {}", line_of(d), d["message"].as_str().unwrap_or(""));
    }
    let missing: Vec<String> = problems
        .iter()
        .filter(|(l, _, _)| !named(&diags, *l))
        .map(|(l, key, marker)| format!("{marker} (line {l}, `{key}`)"))
        .collect();
    assert!(missing.is_empty(), "yaml-language-server does not report: {missing:?}\ndiagnostics: {diags:#?}");
}

#[test]
fn yaml_language_server_accepts_the_shipped_specs() {
    let Some(yls) = tool("yaml-language-server", "npm install -g yaml-language-server") else { return };
    let mut files: Vec<PathBuf> = ["specs", "examples"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root().join(d)).expect("dir").map(|e| e.expect("entry").path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files.push(root().join("tests/fixtures/same.yaml"));
    let settings = json!({"yaml": {"validate": true, "schemaStore": {"enable": false}, "schemas": {}}});
    let mut lsp = Lsp::start("yaml-language-server", &yls, &["--stdio"], settings.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    initialize(&mut lsp, dir.path(), json!({}));
    lsp.notify("workspace/didChangeConfiguration", json!({"settings": settings}));
    for f in &files {
        let text = std::fs::read_to_string(f).expect("spec");
        // Their own first line points at ../schema/…; name the schema absolutely.
        let body = text.split_once('\n').map_or("", |(_, rest)| rest);
        let uri =
            format!("file://{}/{}", dir.path().display(), f.file_name().and_then(|n| n.to_str()).unwrap_or("x.yaml"));
        lsp.open(&uri, "yaml", &format!("# yaml-language-server: $schema={}\n{body}", schema_url()));
        // yaml-language-server publishes once per validation: the first answer counts.
        let diags = lsp.diagnostics(&uri, |_| true);
        assert!(diags.is_empty(), "{}: yaml-language-server reports {diags:#?}", f.display());
    }
    lsp.shutdown();
}
