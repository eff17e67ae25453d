//! The stdio framing of `ordo mcp`: a filter between the client's lines and rmcp, so every
//! line gets an answer, as JSON-RPC requires. A line that is not JSON (bad syntax, invalid
//! UTF-8, nested deeper than serde_json's limit of 128) is answered with a -32700 parse error;
//! a line longer than `MAX_LINE` with a -32600 error naming the limit (and the request's id
//! when the line's start holds it); every other line goes on to rmcp. rmcp's replies and these
//! errors are written out whole, one line at a time, through one writer.

use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream, duplex,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Longest line accepted: room for the largest spec (`names::MAX_SPEC_BYTES`) escaped inside a
/// JSON string.
pub const MAX_LINE: usize = 2 * ordo_proto::names::MAX_SPEC_BYTES;
/// How much of an oversized line is kept to find its id.
const ID_WINDOW: usize = 64 * 1024;
/// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;

/// The two ends rmcp reads from and writes to, and the writer task (awaited at the end so no
/// answer is lost when the client closes its side right after a bad line).
pub struct Framed {
    pub read: DuplexStream,
    pub write: DuplexStream,
    pub writer: JoinHandle<()>,
}

/// Starts the filter over `input` and `output` (the process's stdin and stdout).
pub fn frame<R, W>(input: R, output: W) -> Framed
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (read, to_rmcp) = duplex(1 << 16);
    let (from_rmcp, write) = duplex(1 << 16);
    let (errors_tx, errors_rx) = mpsc::channel(64);
    tokio::spawn(read_lines(input, to_rmcp, errors_tx));
    let writer = tokio::spawn(write_lines(from_rmcp, errors_rx, output));
    Framed {
        read,
        write,
        writer,
    }
}

async fn read_lines<R: AsyncRead + Unpin>(
    input: R,
    mut to_rmcp: DuplexStream,
    errors: mpsc::Sender<Vec<u8>>,
) {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut line = Vec::new();
    // Bytes of the line being dropped for its size, once it is too long.
    let mut oversized: Option<usize> = None;
    loop {
        let chunk = match input.fill_buf().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ordo mcp: cannot read the client's input: {e}");
                break;
            }
        };
        let eof = chunk.is_empty();
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.map_or(chunk.len(), |i| i + 1);
        match &mut oversized {
            Some(seen) => *seen += take,
            None if line.len() + take > MAX_LINE => {
                oversized = Some(line.len() + take);
                line.truncate(ID_WINDOW);
            }
            None => line.extend_from_slice(&chunk[..take]),
        }
        input.consume(take);
        // The last line may lack its newline: it is answered all the same.
        if newline.is_none() && !(eof && (!line.is_empty() || oversized.is_some())) {
            if eof {
                break;
            }
            continue;
        }
        let refusal = match oversized.take() {
            Some(size) => Some(too_large(&line, size)),
            None => parse_error(&line),
        };
        let sent = match refusal {
            Some(answer) => errors.send(answer).await.is_ok(),
            None => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                to_rmcp.write_all(&line).await.is_ok()
            }
        };
        line.clear();
        if !sent || eof {
            break;
        }
    }
}

/// The line without its newline, carriage return and byte-order mark.
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line)
}

/// The -32700 answer to a line that is not JSON, or `None` when it is (or is blank).
fn parse_error(line: &[u8]) -> Option<Vec<u8>> {
    let text = content(line);
    if text.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let why = match std::str::from_utf8(text) {
        Err(e) => format!("the line is not valid UTF-8 (byte {})", e.valid_up_to()),
        Ok(_) => serde_json::from_slice::<serde::de::IgnoredAny>(text)
            .err()?
            .to_string(),
    };
    Some(answer(
        Value::Null,
        PARSE_ERROR,
        format!("Parse error: {why}"),
    ))
}

fn too_large(head: &[u8], size: usize) -> Vec<u8> {
    answer(
        request_id(head).unwrap_or(Value::Null),
        INVALID_REQUEST,
        format!("request of {size} bytes refused: at most {MAX_LINE} bytes are accepted per line"),
    )
}

fn answer(id: Value, code: i64, message: String) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": code, "message": message},
    }))
    .expect("a JSON value serialises");
    line.push(b'\n');
    line
}

/// The top-level `"id"` of a request whose start is `head`, if it is there: a number or a
/// string right after the key, outside every nested object and string.
fn request_id(head: &[u8]) -> Option<Value> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < head.len() {
        match head[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                let end = string_end(head, start)?;
                i = end + 1;
                if depth == 1 && &head[start..end] == b"id" {
                    let rest = head[i..].trim_ascii_start().strip_prefix(b":")?;
                    let value = serde_json::Deserializer::from_slice(rest)
                        .into_iter::<Value>()
                        .next()?
                        .ok()?;
                    return (value.is_number() || value.is_string()).then_some(value);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the quote closing the string that starts at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

async fn write_lines<W: AsyncWrite + Unpin>(
    from_rmcp: DuplexStream,
    mut errors: mpsc::Receiver<Vec<u8>>,
    mut output: W,
) {
    let mut replies = BufReader::new(from_rmcp);
    let mut reply = Vec::new();
    let (mut rmcp_open, mut errors_open) = (true, true);
    while rmcp_open || errors_open {
        // `read_until` keeps a partly read line in `reply` when the other branch wins.
        let line = tokio::select! {
            read = replies.read_until(b'\n', &mut reply), if rmcp_open => match read {
                Ok(n) if n > 0 && reply.ends_with(b"\n") => Some(std::mem::take(&mut reply)),
                _ => {
                    rmcp_open = false;
                    None
                }
            },
            error = errors.recv(), if errors_open => {
                errors_open = error.is_some();
                error
            }
        };
        if let Some(line) = line
            && (output.write_all(&line).await.is_err() || output.flush().await.is_err())
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_json_gets_a_parse_error() {
        for bad in [
            &b"{\"jsonrpc\": \"2.0\", \"id\": 1,\n"[..],
            b"\xff\xfe{}\n",
            "[".repeat(200).as_bytes(),
        ] {
            let line = parse_error(bad).expect("refused");
            let v: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["error"]["code"], PARSE_ERROR, "{v}");
            assert_eq!(v["id"], Value::Null);
        }
        assert!(parse_error(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\r\n").is_none());
        assert!(parse_error("\u{feff}{}\n".as_bytes()).is_none());
        assert!(parse_error(b"  \n").is_none());
    }

    #[test]
    fn the_id_of_an_oversized_request_is_read_from_its_start() {
        let id = |s: &str| request_id(s.as_bytes());
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","#),
            Some(json!(7))
        );
        assert_eq!(id(r#"{"id" : "a\"b","params":{"#), Some(json!("a\"b")));
        // An "id" inside the params, or as a value, is not the request's.
        assert_eq!(id(r#"{"method":"x","params":{"id":3},"name":"id","#), None);
        assert_eq!(
            id(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"argu"#),
            None
        );
    }
}
