//! README.md's quick start, run as written.
//!
//! The test takes the fenced `sh` block under the README's "Quick start"
//! heading (found by its heading, not by line numbers) and runs its lines
//! with `bash -e -x` (stop at the first failed command, trace each one),
//! with only these substitutions:
//!
//! - `cargo run --release -p csms` is the `csms` binary built for this test
//!   (`CARGO_BIN_EXE_csms`), started in the background by the test in a
//!   temporary working directory (so its `./data` is a fresh store); the
//!   test reads the API key from its stdout (the `api_key_generated` line)
//!   and the README's next line, `KEY=<...>`, gets that key in place of
//!   the placeholder, as a user would paste it;
//! - `cargo run --release -p evproto --` is the `evproto` binary next to
//!   `csms` in the same target directory (`cargo test --workspace` builds
//!   it for the evproto package's own tests; otherwise
//!   `cargo build -p evproto`);
//! - `xdg-open` and `open` are fakes first in `PATH` that record their
//!   arguments.
//!
//! Nothing else is changed or shortened (the simulator runs its minute).
//! The README's fixed ports (8080, 8081, 9000) are used as written: the CSMS
//! and the script run in a fresh network namespace of their own
//! (`unshare --net`, `ip link set lo up`, the script joined to it with
//! `nsenter`), so nothing else on the machine is in the way. That needs
//! root (CI runs as root); without it the test fails and says so.
//!
//! Then, through the operator API inside the namespace: at least one
//! session completed and priced (a CDR with a total above zero in the
//! tariff's currency), the Reset call answered `200` with the station's
//! `Accepted`, and the URL given to `xdg-open` serves the console. The
//! README's token list must be the tokens the simulator's drivers present
//! (its `--tokens` default, read from `evproto simulate --help`).
//! On failure the message holds the CSMS's output and log and the
//! script's trace with each command's output.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Hang guard for the CSMS's start-up.
const START_GUARD: Duration = Duration::from_secs(60);
/// Hang guard for the whole script (it runs a one-minute simulation).
const SCRIPT_GUARD: Duration = Duration::from_secs(300);
/// How long a completed session may take to get its CDR.
const CDR_GUARD: Duration = Duration::from_secs(30);

/// What the test changes in the README's lines.
const CSMS_CMD: &str = "cargo run --release -p csms";
const EVPROTO_CMD: &str = "cargo run --release -p evproto --";

/// The fenced `sh` block under the first heading that says "quick start".
fn quick_start_block(readme: &str) -> Vec<String> {
    let mut lines = readme.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with('#') && l.to_lowercase().contains("quick start"))
        .expect("README.md has a heading with \"Quick start\" in it");
    for l in lines.by_ref() {
        if l.trim_end() == "```sh" {
            break;
        }
        assert!(
            !l.starts_with('#'),
            "no ```sh block between the quick-start heading and the next heading ({l})"
        );
    }
    let block: Vec<String> = lines
        .take_while(|l| l.trim_end() != "```")
        .map(str::to_owned)
        .collect();
    assert!(!block.is_empty(), "the quick start's sh block is empty");
    block
}

/// A line's command part (without a trailing `# comment`), trimmed.
fn command_part(line: &str) -> &str {
    // the README's comments start with "#" after whitespace; a "#" inside
    // a word (a URL fragment) is not one
    let cut = line
        .char_indices()
        .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with(char::is_whitespace)))
        .map_or(line.len(), |(i, _)| i);
    line[..cut].trim()
}

/// The tokens the README registers: the words of its `for t in ...; do` line.
fn readme_tokens(block: &[String]) -> Vec<String> {
    let line = block
        .iter()
        .map(|l| command_part(l))
        .find(|l| l.starts_with("for t in "))
        .expect("the quick start registers the drivers' tokens with `for t in ...; do`");
    let list = line["for t in ".len()..]
        .split(';')
        .next()
        .unwrap_or_default();
    list.split_whitespace().map(str::to_owned).collect()
}

/// The tokens the README's simulator presents: its `--tokens` if the line
/// gives one, else the default `evproto simulate --help` states.
fn simulator_tokens(block: &[String], evproto: &Path) -> Vec<String> {
    let line = block
        .iter()
        .map(|l| command_part(l))
        .find(|l| l.contains(EVPROTO_CMD) && l.contains(" simulate"))
        .expect("the quick start runs `evproto simulate`");
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if let Some(v) = w.strip_prefix("--tokens=") {
            return v.split(',').map(str::to_owned).collect();
        }
        if w == "--tokens" {
            let v = words.next().expect("--tokens has a value");
            return v.split(',').map(str::to_owned).collect();
        }
    }
    let out = Command::new(evproto)
        .args(["simulate", "--help"])
        .output()
        .expect("evproto simulate --help runs");
    assert!(out.status.success(), "evproto simulate --help: {out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    let after = &help[help
        .find("--tokens")
        .unwrap_or_else(|| panic!("evproto simulate --help lists --tokens:\n{help}"))..];
    let start = after
        .find("[default: ")
        .unwrap_or_else(|| panic!("--tokens has a default in:\n{help}"))
        + "[default: ".len();
    let end = after[start..].find(']').expect("default ends with ]") + start;
    after[start..end].split(',').map(str::to_owned).collect()
}

/// The `evproto` binary of the same build as this test's `csms`.
fn evproto_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_csms")).with_file_name("evproto");
    assert!(
        bin.exists(),
        "{} is missing: build it with cargo build -p evproto (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// One line the CSMS prints on stdout (only the fields read here).
#[derive(Deserialize)]
struct Printed {
    event: Option<String>,
    api_key: Option<String>,
}

/// A page of an operator API list.
#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Session {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct Amount {
    excl_vat: f64,
    incl_vat: f64,
}

#[derive(Deserialize)]
struct Cdr {
    session_id: String,
    currency: String,
    total_cost: Amount,
}

#[derive(Deserialize)]
struct Tariff {
    currency: String,
}

/// The CSMS in its own network namespace, with its output in files; killed
/// (and the namespace gone with it) when dropped.
struct Csms {
    child: Child,
    dir: PathBuf,
}

impl Csms {
    /// `csms args...` in `dir`, in a fresh network namespace with loopback up.
    fn start(dir: &Path, args: &[&str]) -> Csms {
        let child = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(env!("CARGO_BIN_EXE_csms"))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("csms.stdout")).unwrap())
            .stderr(File::create(dir.join("csms.stderr")).unwrap())
            .spawn()
            .expect("unshare --net runs");
        Csms {
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// The network namespace, for `nsenter`.
    fn netns(&self) -> String {
        format!("--net=/proc/{}/ns/net", self.child.id())
    }

    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- csms stdout ---\n{}\n--- csms log ---\n{}",
            read("csms.stdout"),
            read("csms.stderr")
        )
    }

    /// Waits for the printed API key and the `listening` line.
    fn api_key(&mut self) -> String {
        let deadline = Instant::now() + START_GUARD;
        loop {
            let text = std::fs::read_to_string(self.dir.join("csms.stdout")).unwrap_or_default();
            let printed: Vec<Printed> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let key = printed
                .iter()
                .find(|p| p.event.as_deref() == Some("api_key_generated"))
                .and_then(|p| p.api_key.clone());
            let listening = printed
                .iter()
                .any(|p| p.event.as_deref() == Some("listening"));
            if let (Some(key), true) = (key, listening) {
                return key;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "csms exited ({status}) before printing its API key\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "csms printed no API key in {START_GUARD:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET path` on the admin port inside the namespace (curl), as
    /// (status, body).
    fn get(&self, key: &str, url: &str) -> (u16, String) {
        let out = Command::new("nsenter")
            .arg(self.netns())
            .args(["--", "curl", "-sS", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {key}"))
            .arg(url)
            .output()
            .expect("nsenter curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let code = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {url}: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.output()
            )
        });
        (code, body.to_owned())
    }

    fn list<T: for<'de> Deserialize<'de>>(&self, key: &str, path: &str) -> Vec<T> {
        let (code, body) = self.get(key, &format!("http://127.0.0.1:8081{path}"));
        assert_eq!(code, 200, "GET {path}: {body}\n{}", self.output());
        serde_json::from_str::<Page<T>>(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
            .items
    }
}

impl Drop for Csms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a process group we started (the script and whatever it left
/// running in the background).
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

#[test]
fn the_readme_quick_start_charges_prices_and_resets_as_written() {
    assert!(
        is_root(),
        "the quick-start test runs the README's fixed ports in a network namespace of its own \
         (unshare --net, nsenter), which needs root: run it as root (CI does)"
    );
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let block = quick_start_block(&readme);
    let evproto = evproto_bin();

    // the tokens the README registers are the ones the drivers present
    let registered = readme_tokens(&block);
    let presented = simulator_tokens(&block, &evproto);
    let (mut a, mut b) = (registered.clone(), presented.clone());
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "the README registers {registered:?} but the simulator's drivers present {presented:?}"
    );

    // the CSMS line, and the KEY line the user fills in after it
    let csms_at = block
        .iter()
        .position(|l| command_part(l).starts_with(CSMS_CMD))
        .expect("the quick start starts the CSMS with `cargo run --release -p csms`");
    let csms_args: Vec<&str> = command_part(&block[csms_at])[CSMS_CMD.len()..]
        .split_whitespace()
        .skip_while(|w| *w == "--")
        .collect();
    let key_at = (csms_at + 1..block.len())
        .find(|&i| !command_part(&block[i]).is_empty())
        .expect("a line after the CSMS's");
    assert!(
        command_part(&block[key_at]).starts_with("KEY=<"),
        "the line after the CSMS's sets KEY=<the printed key>: {}",
        block[key_at]
    );

    let dir = common::temp_dir("quickstart");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = dir.join("opened");
    for name in ["xdg-open", "open"] {
        let fake = bin.join(name);
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n",
                opened.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let mut csms = Csms::start(&dir, &csms_args);
    let key = csms.api_key();

    // the script: the README's lines with the substitutions above
    let mut script = String::new();
    for (i, line) in block.iter().enumerate() {
        let line = if i < csms_at {
            line.clone()
        } else if i == csms_at {
            format!(
                "# {CSMS_CMD}: started by the test (PID {})",
                csms.child.id()
            )
        } else if i == key_at {
            let open = line.find('<').unwrap();
            let close = open + line[open..].find('>').expect("KEY=<...> closes");
            format!("{}{key}{}", &line[..open], &line[close + 1..])
        } else {
            line.replace(EVPROTO_CMD, &evproto.display().to_string())
        };
        assert!(
            !command_part(&line).contains("cargo "),
            "a cargo command the test does not know how to substitute: {line}"
        );
        script.push_str(&line);
        script.push('\n');
    }
    std::fs::write(dir.join("quickstart.sh"), &script).unwrap();

    let log_path = dir.join("quickstart.out");
    let log = File::create(&log_path).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    use std::os::unix::process::CommandExt;
    let mut run = Command::new("nsenter")
        .arg(csms.netns())
        .args(["--", "bash", "-e", "-x", "quickstart.sh"])
        .current_dir(&dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("nsenter bash runs");
    let deadline = Instant::now() + SCRIPT_GUARD;
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            kill_group(&mut run);
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // whatever the script left in the background
    kill_group(&mut run);
    let out = std::fs::read_to_string(&log_path).unwrap_or_default();
    let report = || {
        format!(
            "--- script ---\n{script}--- its trace and output ---\n{out}\n{}",
            csms.output()
        )
    };
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("the quick start failed ({s})\n{}", report()),
        None => panic!(
            "the quick start did not finish in {SCRIPT_GUARD:?}\n{}",
            report()
        ),
    }

    // the Reset call answered 200 with the station's Accepted
    let reset = out
        .find("/ocpp/Reset")
        .and_then(|at| {
            out[at..]
                .find("\n+ ")
                .map(|end| &out[at..at + end])
                .or(Some(&out[at..]))
        })
        .unwrap_or_else(|| panic!("no Reset call in the trace\n{}", report()));
    assert!(
        reset.contains(" 200") && reset.contains("\"Accepted\""),
        "the Reset call did not answer 200 with Accepted: {reset}\n{}",
        report()
    );

    // the console's address was opened, with the key, and serves the page
    let urls = std::fs::read_to_string(&opened).unwrap_or_default();
    let url = urls
        .lines()
        .next()
        .unwrap_or_else(|| panic!("xdg-open was not called\n{}", report()));
    assert!(
        url.starts_with("http://localhost:8081/") && url.contains(&key),
        "xdg-open got {url}, not the admin port's page with the key\n{}",
        report()
    );
    let (code, page) = csms.get(&key, url);
    assert_eq!(code, 200, "GET {url}: {page}\n{}", report());

    // at least one session completed and priced in the tariff's currency
    let (code, tariff) = csms.get(&key, "http://127.0.0.1:8081/api/tariffs/default");
    assert_eq!(code, 200, "the default tariff: {tariff}\n{}", report());
    let currency = serde_json::from_str::<Tariff>(&tariff).unwrap().currency;
    let completed: Vec<String> = csms
        .list::<Session>(&key, "/api/sessions?status=Completed")
        .into_iter()
        .filter(|s| s.status == "Completed")
        .map(|s| s.id)
        .collect();
    assert!(
        !completed.is_empty(),
        "no session was completed\n{}",
        report()
    );
    let deadline = Instant::now() + CDR_GUARD;
    loop {
        let cdrs = csms.list::<Cdr>(&key, "/api/cdrs");
        let priced = cdrs.iter().filter(|c| {
            completed.contains(&c.session_id)
                && c.currency == currency
                && c.total_cost.excl_vat > 0.0
                && c.total_cost.incl_vat >= c.total_cost.excl_vat
        });
        if priced.count() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sessions {completed:?} completed, but none has a CDR with a total above 0 {currency}\n{}",
            report()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(csms);
    let _ = std::fs::remove_dir_all(&dir);
}
