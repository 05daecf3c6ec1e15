//! `evproto ocpp validate`: one verdict line per input line, fast.
//!
//! Payload mode validates lines in parallel (one worker per core, each on a
//! contiguous run of lines, outputs written back in input order). Frame mode
//! is sequential, because a CALLRESULT's schema comes from the CALL before it.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use evproto_ocpp_types::lenient::Policy;
use evproto_ocpp_types::rpc::{Frame, FrameError, FrameErrorKind};
use evproto_ocpp_types::{find_action, ActionInfo, DecodeError, ValidateFn, ValidateWithFn};

/// Options of `evproto ocpp validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// OCPP version: 1.6, 2.0.1 or 2.1.
    #[arg(long, value_parser = ["1.6", "2.0.1", "2.1"])]
    version: String,
    /// Action name (e.g. BootNotification): each line is then one payload of this action.
    #[arg(long, requires = "message")]
    action: Option<String>,
    /// Which payload of the action each line is: request or response.
    #[arg(long, value_parser = ["request", "response"], requires = "action")]
    message: Option<String>,
    /// Accept known charger quirks (wrong-case or unknown optional enum values,
    /// over-long strings, date-times without offset, null optionals); each
    /// repair is reported on stderr as `line N: warning ...`.
    #[arg(long)]
    lenient: bool,
    /// Worker threads for payload mode (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// What differs between versions.
#[derive(Clone, Copy)]
struct Version {
    actions: &'static [ActionInfo],
    decode_code: fn(&DecodeError) -> String,
    frame_code: fn(&FrameError) -> String,
    parse_frame: for<'a> fn(&'a str) -> Result<Frame<'a>, FrameError>,
    known_code: fn(&str) -> bool,
}

fn version(name: &str) -> Result<Version, String> {
    Ok(match name {
        "1.6" => Version {
            actions: evproto_ocpp_types::v16::ACTIONS,
            decode_code: |e| evproto_ocpp_types::v16::ErrorCode::for_decode_error(e).to_string(),
            frame_code: |e| evproto_ocpp_types::v16::ErrorCode::for_frame_error(e).to_string(),
            parse_frame: evproto_ocpp_types::v16::parse_frame,
            known_code: |c| evproto_ocpp_types::v16::ErrorCode::from_wire(c).is_known(),
        },
        "2.0.1" => Version {
            actions: evproto_ocpp_types::v201::ACTIONS,
            decode_code: |e| evproto_ocpp_types::v201::ErrorCode::for_decode_error(e).to_string(),
            frame_code: |e| evproto_ocpp_types::v201::ErrorCode::for_frame_error(e).to_string(),
            parse_frame: evproto_ocpp_types::v201::parse_frame,
            known_code: |c| evproto_ocpp_types::v201::ErrorCode::from_wire(c).is_known(),
        },
        "2.1" => Version {
            actions: evproto_ocpp_types::v21::ACTIONS,
            decode_code: |e| evproto_ocpp_types::v21::ErrorCode::for_decode_error(e).to_string(),
            frame_code: |e| evproto_ocpp_types::v21::ErrorCode::for_frame_error(e).to_string(),
            parse_frame: evproto_ocpp_types::v21::parse_frame,
            known_code: |c| evproto_ocpp_types::v21::ErrorCode::from_wire(c).is_known(),
        },
        other => return Err(format!("unknown OCPP version {other}")),
    })
}

/// One line's verdict, appended to `out`.
/// Lines found invalid in this run (the exit status is 1 when any was).
static INVALID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_error(out: &mut Vec<u8>, code: &str, pointer: &str, reason: &str) {
    INVALID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    out.extend_from_slice(b"error ");
    out.extend_from_slice(code.as_bytes());
    out.push(b' ');
    out.extend_from_slice(pointer.as_bytes());
    out.push(b' ');
    // one line, whatever the reason text holds
    for c in reason.chars() {
        if c.is_control() {
            out.push(b' ');
        } else {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
    out.push(b'\n');
}

fn syntax_error(reason: &str) -> DecodeError {
    DecodeError::new(evproto_ocpp_types::DecodeErrorKind::Syntax, "", reason)
}

/// Validates a payload with the strict or lenient function.
enum Check {
    Strict(ValidateFn),
    Lenient(ValidateWithFn, Policy),
}

impl Check {
    fn run(&self, line_no: usize, text: &str, warnings: &mut Vec<u8>) -> Result<(), DecodeError> {
        match self {
            Check::Strict(f) => f(text),
            Check::Lenient(f, policy) => {
                for w in f(text, policy)? {
                    let _ = writeln!(
                        warnings,
                        "line {line_no}: warning {:?} at {:?}: {} (was {})",
                        w.kind, w.pointer, w.action, w.original
                    );
                }
                Ok(())
            }
        }
    }
}

/// Splits `chunk` into lines (without `\n` or a trailing `\r`).
fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

fn check_payload_line(
    v: &Version,
    check: &Check,
    line_no: usize,
    line: &[u8],
    out: &mut Vec<u8>,
    warnings: &mut Vec<u8>,
) {
    let result = match std::str::from_utf8(line) {
        Ok(text) => check.run(line_no, text, warnings),
        Err(e) => Err(syntax_error(&format!("invalid UTF-8: {e}"))),
    };
    match result {
        Ok(()) => out.extend_from_slice(b"ok\n"),
        Err(e) => write_error(out, &(v.decode_code)(&e), e.pointer(), e.message()),
    }
}

/// Reads stdin in large blocks and hands `f` runs of complete lines.
fn for_each_block(mut f: impl FnMut(&[u8], usize) -> io::Result<()>) -> io::Result<()> {
    const BLOCK: usize = 8 << 20;
    let mut stdin = io::stdin().lock();
    let mut buf: Vec<u8> = Vec::with_capacity(BLOCK * 2);
    let mut line_no = 1usize;
    let mut eof = false;
    while !eof {
        // fill to at least BLOCK bytes
        while buf.len() < BLOCK {
            let start = buf.len();
            buf.resize(start + BLOCK, 0);
            let n = stdin.read(&mut buf[start..])?;
            buf.truncate(start + n);
            if n == 0 {
                eof = true;
                break;
            }
        }
        let end = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => i + 1,
                None => continue, // a line longer than the block: read more
            }
        };
        f(&buf[..end], line_no)?;
        line_no += memchr::memchr_iter(b'\n', &buf[..end]).count();
        buf.drain(..end);
    }
    Ok(())
}

/// Splits a block of complete lines into about `n` runs of whole lines.
fn split_runs(block: &[u8], n: usize) -> Vec<&[u8]> {
    let mut runs = Vec::with_capacity(n);
    let mut rest = block;
    for i in (1..n).rev() {
        let target = rest.len() / (i + 1);
        if target == 0 {
            break;
        }
        match memchr::memchr(b'\n', &rest[target..]) {
            Some(j) => {
                let cut = target + j + 1;
                runs.push(&rest[..cut]);
                rest = &rest[cut..];
            }
            None => break,
        }
    }
    runs.push(rest);
    runs
}

fn run_payloads(v: Version, check: Check, threads: usize) -> io::Result<()> {
    let stdout = io::stdout();
    let stderr = io::stderr();
    for_each_block(|block, first_line| {
        let runs = split_runs(block, threads);
        let mut results: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(runs.len());
        let v = &v;
        let check = &check;
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            let mut line_no = first_line;
            for run in &runs {
                let start = line_no;
                line_no += memchr::memchr_iter(b'\n', run).count();
                handles.push(s.spawn(move || {
                    let mut out = Vec::with_capacity(run.len() / 64 + 64);
                    let mut warnings = Vec::new();
                    for (i, line) in lines(run).enumerate() {
                        check_payload_line(v, check, start + i, line, &mut out, &mut warnings);
                    }
                    (out, warnings)
                }));
            }
            for h in handles {
                results.push(h.join().unwrap_or_default());
            }
        });
        let mut out = stdout.lock();
        let mut err = stderr.lock();
        for (o, w) in &results {
            out.write_all(o)?;
            err.write_all(w)?;
        }
        Ok(())
    })?;
    stdout.lock().flush()
}

fn run_frames(v: Version, lenient: Option<Policy>) -> io::Result<()> {
    let stdout = io::stdout();
    let mut pending: HashMap<String, &'static ActionInfo> = HashMap::new();
    for_each_block(|block, first_line| {
        let mut out = Vec::with_capacity(block.len() / 64 + 64);
        let mut warnings = Vec::new();
        for (i, line) in lines(block).enumerate() {
            check_frame_line(
                &v,
                lenient.as_ref(),
                &mut pending,
                first_line + i,
                line,
                &mut out,
                &mut warnings,
            );
        }
        stdout.lock().write_all(&out)?;
        io::stderr().lock().write_all(&warnings)
    })?;
    stdout.lock().flush()
}

/// The pointer of element `index` of the frame, joined with a payload pointer.
fn frame_pointer(index: usize, inner: &str) -> String {
    format!("/{index}{inner}")
}

fn check_frame_line(
    v: &Version,
    lenient: Option<&Policy>,
    pending: &mut HashMap<String, &'static ActionInfo>,
    line_no: usize,
    line: &[u8],
    out: &mut Vec<u8>,
    warnings: &mut Vec<u8>,
) {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => {
            let e = FrameError::not_json(format!("invalid UTF-8: {e}"));
            return write_error(out, &(v.frame_code)(&e), "", e.message());
        }
    };
    let frame = match (v.parse_frame)(text) {
        Ok(f) => f,
        Err(e) => {
            let ptr = match e.kind() {
                FrameErrorKind::BadMessageType | FrameErrorKind::UnknownMessageType => "/0",
                FrameErrorKind::BadMessageId => "/1",
                FrameErrorKind::PayloadNotObject => match e.message_type() {
                    Some(3) => "/2",
                    Some(4 | 5) => "/4",
                    _ => "/3",
                },
                _ => "",
            };
            return write_error(out, &(v.frame_code)(&e), ptr, e.message());
        }
    };
    let strict_or = |f: ValidateFn, fw: ValidateWithFn| match lenient {
        Some(p) => Check::Lenient(fw, *p),
        None => Check::Strict(f),
    };
    let (check, index) = match &frame {
        Frame::Call { id, action, .. } | Frame::Send { id, action, .. } => {
            let Some(info) = find_action(v.actions, action) else {
                let e = DecodeError::unknown_action(action);
                return write_error(out, &(v.decode_code)(&e), "/2", e.message());
            };
            let is_send = matches!(frame, Frame::Send { .. });
            if info.send != is_send {
                let e = DecodeError::new(
                    evproto_ocpp_types::DecodeErrorKind::UnknownAction,
                    "",
                    if is_send {
                        "action is not a SEND message"
                    } else {
                        "a SEND message in a CALL frame"
                    },
                );
                return write_error(out, &(v.decode_code)(&e), "/2", e.message());
            }
            if !is_send {
                pending.insert(id.to_string(), info);
            }
            (
                strict_or(info.validate_request, info.validate_request_with),
                3,
            )
        }
        Frame::CallResult { id, .. } => match pending.remove(id.as_ref()) {
            Some(info) => match (info.validate_response, info.validate_response_with) {
                (Some(f), Some(fw)) => (strict_or(f, fw), 2),
                _ => return out.extend_from_slice(b"ok\n"),
            },
            // Its CALL is not in the input: the frame itself is well formed.
            None => return out.extend_from_slice(b"ok\n"),
        },
        Frame::CallError { id, error } | Frame::CallResultError { id, error } => {
            pending.remove(id.as_ref());
            if !(v.known_code)(&error.code) {
                let e = DecodeError::new(
                    evproto_ocpp_types::DecodeErrorKind::UnknownEnumValue,
                    "",
                    format!("unknown error code `{}`", error.code),
                );
                return write_error(out, &(v.decode_code)(&e), "/2", e.message());
            }
            return out.extend_from_slice(b"ok\n");
        }
        _ => return out.extend_from_slice(b"ok\n"),
    };
    let payload = match &frame {
        Frame::Call { payload, .. }
        | Frame::Send { payload, .. }
        | Frame::CallResult { payload, .. } => payload.get(),
        _ => return out.extend_from_slice(b"ok\n"),
    };
    match check.run(line_no, payload, warnings) {
        Ok(()) => out.extend_from_slice(b"ok\n"),
        Err(e) => write_error(
            out,
            &(v.decode_code)(&e),
            &frame_pointer(index, e.pointer()),
            e.message(),
        ),
    }
}

/// Validates stdin; `Ok(false)` when a line was invalid (exit 1), `Err` for
/// usage and I/O errors (exit 2).
pub(crate) fn run(args: &Args) -> Result<bool, String> {
    let v = version(&args.version)?;
    let policy = args.lenient.then(Policy::lenient);
    let result = match (&args.action, &args.message) {
        (Some(action), Some(message)) => {
            let info = find_action(v.actions, action)
                .ok_or_else(|| format!("OCPP {} has no action `{action}`", args.version))?;
            let check = match (message.as_str(), policy) {
                ("request", None) => Check::Strict(info.validate_request),
                ("request", Some(p)) => Check::Lenient(info.validate_request_with, p),
                (_, None) => Check::Strict(
                    info.validate_response
                        .ok_or("a SEND message has no response")?,
                ),
                (_, Some(p)) => Check::Lenient(
                    info.validate_response_with
                        .ok_or("a SEND message has no response")?,
                    p,
                ),
            };
            let threads = args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
                .max(1);
            run_payloads(v, check, threads)
        }
        _ => run_frames(v, policy),
    };
    let clean = INVALID.load(std::sync::atomic::Ordering::Relaxed) == 0;
    match result {
        Ok(()) => Ok(clean),
        // a closed pipe (`| head`) is not an error
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(clean),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_strip_cr() {
        let got: Vec<&[u8]> = lines(b"a\r\nb\n\nc").collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"", b"c"]);
    }

    #[test]
    fn runs_cover_the_block_on_line_boundaries() {
        let block = b"aaaa\nbb\ncccccc\nd\neeeee\n";
        for n in 1..6 {
            let runs = split_runs(block, n);
            assert_eq!(runs.concat(), block.to_vec());
            assert!(runs.iter().all(|r| r.is_empty() || r.ends_with(b"\n")));
        }
    }
}
