//! Container log files in CRI's format: one line per record,
//! `<RFC3339Nano time> <stdout|stderr> <F|P> <content>`, where `P` marks a
//! partial line continued by the next record. Runtimes write them; the agent
//! reads them to serve `kubectl logs`.
//!
//! Writing: [`LogWriter`] appends records (each one `write` on an
//! `O_APPEND` file, so stdout and stderr writers can share a file), and
//! [`capture`] turns a pipe into records, splitting lines longer than
//! [`MAX_RECORD_BYTES`] into `P` records as containerd does.
//!
//! Reading: [`read_log`] answers `kubectl logs [--tail] [--since-time]
//! [--timestamps] [--limit-bytes]`; [`follow_log`] adds `-f`, polling the file
//! until the caller says the container has exited. `--previous` is the
//! agent's business: it reads the previous attempt's log path.
//!
//! # Caveats
//! Partial records are joined back into one logical line, per stream, before
//! anything else: `--tail` counts logical lines and a joined line carries the
//! timestamp of its first record. Malformed file lines are skipped (as the
//! kubelet does). Log rotation is not handled; files grow until the
//! container is removed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::FutureExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Longest content one record carries; longer lines become `P` records
/// (containerd's buffer size).
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// How often [`follow_log`] looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// About how much content one chunk of [`follow_log`] carries, so a large
/// file streams instead of being read into memory whole.
const CHUNK_BYTES: usize = 64 * 1024;

/// Why reading or writing a log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file could not be opened, read or written.
    #[error("log file {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The underlying cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a CRI log record.
    #[error("malformed log record: {0}")]
    Malformed(&'static str),
}

/// Which of a container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// The word CRI uses in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
        }
    }
}

/// One parsed file line, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// The timestamp exactly as written.
    pub timestamp: &'a str,
    /// Which stream.
    pub stream: LogStream,
    /// Whether the next record of this stream continues this line.
    pub partial: bool,
    /// The content, without the trailing newline.
    pub content: &'a [u8],
}

impl LogRecord<'_> {
    /// The parsed timestamp.
    ///
    /// # Errors
    /// [`LogError::Malformed`] when it is not RFC 3339.
    pub fn time(&self) -> Result<DateTime<Utc>, LogError> {
        DateTime::parse_from_rfc3339(self.timestamp)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| LogError::Malformed("timestamp is not RFC 3339"))
    }
}

/// Formats a timestamp as the log file and `--timestamps` show it.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Formats one record, newline included.
pub fn format_record(
    time: DateTime<Utc>,
    stream: LogStream,
    partial: bool,
    content: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(format_time(time).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Parses one file line (with or without its trailing newline).
///
/// # Errors
/// [`LogError::Malformed`] when a field is missing or unknown. The timestamp
/// is only checked by [`LogRecord::time`].
pub fn parse_record(line: &[u8]) -> Result<LogRecord<'_>, LogError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut fields = line.splitn(4, |b| *b == b' ');
    let timestamp = fields.next().filter(|t| !t.is_empty());
    let timestamp = timestamp
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or(LogError::Malformed("missing timestamp"))?;
    let stream = match fields.next() {
        Some(b"stdout") => LogStream::Stdout,
        Some(b"stderr") => LogStream::Stderr,
        _ => return Err(LogError::Malformed("stream is neither stdout nor stderr")),
    };
    let partial = match fields.next() {
        Some(b"F") => false,
        Some(b"P") => true,
        _ => return Err(LogError::Malformed("tag is neither F nor P")),
    };
    Ok(LogRecord {
        timestamp,
        stream,
        partial,
        content: fields.next().unwrap_or_default(),
    })
}

/// Appends records to one container's log file.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: PathBuf,
}

impl LogWriter {
    /// Opens `path` for appending, creating it and its parent directories.
    ///
    /// # Errors
    /// [`LogError::Io`].
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, LogError> {
        let path = path.into();
        let io = |source| LogError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok(LogWriter { file, path })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record stamped `time`.
    ///
    /// # Errors
    /// The write failed.
    pub fn write_record(
        &self,
        time: DateTime<Utc>,
        stream: LogStream,
        partial: bool,
        content: &[u8],
    ) -> std::io::Result<()> {
        // One write per record: O_APPEND keeps concurrent writers' records whole.
        (&self.file).write_all(&format_record(time, stream, partial, content))
    }

    /// Appends one complete line (without its newline) stamped now, split
    /// into `P` records when longer than [`MAX_RECORD_BYTES`].
    ///
    /// # Errors
    /// The write failed.
    pub fn write_line(&self, stream: LogStream, line: &[u8]) -> std::io::Result<()> {
        let mut chunks = line.chunks(MAX_RECORD_BYTES).peekable();
        if chunks.peek().is_none() {
            return self.write_record(Utc::now(), stream, false, b"");
        }
        while let Some(chunk) = chunks.next() {
            self.write_record(Utc::now(), stream, chunks.peek().is_some(), chunk)?;
        }
        Ok(())
    }
}

/// Copies `reader` (a container's stdout or stderr pipe) into `writer` as
/// records until end of file. A line longer than [`MAX_RECORD_BYTES`] is
/// written as `P` records as it arrives; a last line without a newline is
/// written as a full record.
///
/// # Errors
/// Reading the pipe or writing the file failed.
pub async fn capture<R: AsyncRead + Unpin>(
    reader: R,
    stream: LogStream,
    writer: Arc<LogWriter>,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(MAX_RECORD_BYTES, reader);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_RECORD_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        // Short of the limit without a newline means end of file: a full record.
        let partial = !complete && n == MAX_RECORD_BYTES;
        writer.write_record(Utc::now(), stream, partial, &line)?;
    }
}

/// What to read from a log, as `kubectl logs` asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last this-many lines (`--tail`); `None` for all.
    pub tail: Option<usize>,
    /// Only lines stamped at or after this time (`--since-time`, `--since`).
    pub since: Option<DateTime<Utc>>,
    /// Prefix each line with its timestamp (`--timestamps`).
    pub timestamps: bool,
    /// Stop after this many bytes of output (`--limit-bytes`).
    pub limit_bytes: Option<u64>,
    /// Only one stream; `None` for both interleaved.
    pub stream: Option<LogStream>,
}

/// Reads a log file to its current end, into memory; use [`follow_log`]
/// with a ready `exited` future to stream a large file in chunks instead.
///
/// # Errors
/// [`LogError::Io`] when the file cannot be opened or read.
pub async fn read_log(path: &Path, options: &LogOptions) -> Result<Vec<u8>, LogError> {
    let mut reader = Reader::open(path, options.clone()).await?;
    let mut out = reader.initial().await?;
    while !reader.at_eof && !reader.limit_reached() {
        out.extend(reader.more().await?);
    }
    out.extend(reader.finish());
    Ok(out)
}

/// Reads a log file like [`read_log`] in chunks, then keeps yielding what
/// is appended (`kubectl logs -f`) until `exited` resolves, after which it
/// yields what is left and ends. Also ends once `limit_bytes` is reached.
///
/// `exited` should resolve once the runtime reports the container Exited:
/// runtimes record that only after the container's output is in the file.
/// A future that is ready at once reads to the current end, streaming.
///
/// # Errors
/// The stream yields [`LogError::Io`] (and then ends) when the file cannot be
/// opened or read.
pub fn follow_log(
    path: PathBuf,
    options: LogOptions,
    exited: BoxFuture<'static, ()>,
) -> BoxStream<'static, Result<Vec<u8>, LogError>> {
    enum Phase {
        Start(PathBuf, LogOptions, BoxFuture<'static, ()>),
        /// The reader, the exit signal, and whether it has fired.
        Live(
            Box<Reader>,
            futures::future::Shared<BoxFuture<'static, ()>>,
            bool,
        ),
        Done,
    }
    let stream = futures::stream::unfold(Phase::Start(path, options, exited), |phase| async {
        match phase {
            Phase::Start(path, options, exited) => {
                let result = async {
                    let mut reader = Reader::open(&path, options).await?;
                    let out = reader.initial().await?;
                    Ok::<_, LogError>((reader, out))
                }
                .await;
                match result {
                    Err(e) => Some((Err(e), Phase::Done)),
                    Ok((reader, out)) => {
                        let next = Phase::Live(Box::new(reader), exited.shared(), false);
                        Some((Ok(out), next))
                    }
                }
            }
            Phase::Live(mut reader, exited, mut done) => loop {
                if reader.limit_reached() {
                    return None;
                }
                if reader.at_eof {
                    if done {
                        return Some((Ok(reader.finish()), Phase::Done));
                    }
                    // Exit is checked before the last read, so nothing written before it is lost.
                    done = tokio::select! {
                        _ = exited.clone() => true,
                        _ = tokio::time::sleep(FOLLOW_POLL) => false,
                    };
                }
                match reader.more().await {
                    Err(e) => return Some((Err(e), Phase::Done)),
                    Ok(out) if !out.is_empty() => {
                        return Some((Ok(out), Phase::Live(reader, exited, done)));
                    }
                    Ok(_) => {}
                }
            },
            Phase::Done => None,
        }
    });
    // The first chunk may be empty (nothing logged yet); skip empty chunks.
    Box::pin(futures::StreamExt::filter(stream, |chunk| {
        futures::future::ready(!matches!(chunk, Ok(c) if c.is_empty()))
    }))
}

/// A logical line, joined from its records.
struct Line {
    timestamp: String,
    content: Vec<u8>,
    /// Whether its last record was `F` (it ends with a newline).
    complete: bool,
}

/// Incremental decoder over one file.
struct Reader {
    path: PathBuf,
    file: BufReader<tokio::fs::File>,
    options: LogOptions,
    /// An incomplete file line (the writer is mid-record).
    carry: Vec<u8>,
    /// Per stream, a line whose `P` records have not been closed by an `F`.
    open: [Option<Line>; 2],
    written: u64,
    /// The last read stopped at the end of the file (not at the chunk size).
    at_eof: bool,
}

impl Reader {
    async fn open(path: &Path, options: LogOptions) -> Result<Self, LogError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| LogError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Reader {
            path: path.to_owned(),
            file: BufReader::new(file),
            options,
            carry: Vec::new(),
            open: [None, None],
            written: 0,
            at_eof: false,
        })
    }

    /// The first chunk: the `tail` (found by reading the whole file), or
    /// the file's first [`CHUNK_BYTES`].
    async fn initial(&mut self) -> Result<Vec<u8>, LogError> {
        let mut lines = Vec::new();
        match self.options.tail {
            Some(tail) => self.read_lines(&mut lines, Some(tail), None).await?,
            None => self.read_lines(&mut lines, None, Some(CHUNK_BYTES)).await?,
        }
        if let Some(tail) = self.options.tail {
            // Lines still open at the end count towards the tail too.
            let open = self.open.iter().flatten().filter(|l| l.wanted()).count();
            let skip = lines.len().saturating_sub(tail.saturating_sub(open));
            lines.drain(..skip);
            if tail < open {
                for slot in self.open.iter_mut().filter(|s| s.is_some()) {
                    *slot = Some(Line::skipped());
                }
            }
        }
        Ok(self.render(lines))
    }

    /// Up to [`CHUNK_BYTES`] of lines completed since the last call.
    async fn more(&mut self) -> Result<Vec<u8>, LogError> {
        let mut lines = Vec::new();
        self.read_lines(&mut lines, None, Some(CHUNK_BYTES)).await?;
        Ok(self.render(lines))
    }

    /// Lines left open at the end, as they are (no newline).
    fn finish(&mut self) -> Vec<u8> {
        let open: Vec<Line> = self.open.iter_mut().filter_map(Option::take).collect();
        self.render(open)
    }

    fn limit_reached(&self) -> bool {
        self.options.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// Decodes whole file lines up to the end, keeping at most `cap`
    /// logical lines (the initial pass of a `--tail` read stays bounded),
    /// or stopping early once `budget` bytes of content are decoded.
    async fn read_lines(
        &mut self,
        lines: &mut Vec<Line>,
        cap: Option<usize>,
        budget: Option<usize>,
    ) -> Result<(), LogError> {
        let mut window: VecDeque<Line> = VecDeque::new();
        let mut decoded = 0;
        self.at_eof = false;
        loop {
            if budget.is_some_and(|b| decoded >= b) {
                break;
            }
            let n = self
                .file
                .read_until(b'\n', &mut self.carry)
                .await
                .map_err(|source| LogError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 || self.carry.last() != Some(&b'\n') {
                self.at_eof = true;
                break;
            }
            let record = std::mem::take(&mut self.carry);
            if let Some(line) = self.decode(&record) {
                decoded += line.content.len() + 1;
                window.push_back(line);
                if cap.is_some_and(|c| window.len() > c) {
                    window.pop_front();
                }
            }
        }
        lines.extend(window);
        Ok(())
    }

    /// Feeds one file line; returns a logical line when one completes.
    fn decode(&mut self, raw: &[u8]) -> Option<Line> {
        let record = parse_record(raw).ok()?;
        if self.options.stream.is_some_and(|s| s != record.stream) {
            return None;
        }
        let slot = &mut self.open[record.stream.index()];
        let line = match slot.take() {
            Some(mut line) => {
                if line.wanted() {
                    line.content.extend_from_slice(record.content);
                }
                line
            }
            None => {
                if let Some(since) = self.options.since {
                    if record.time().ok()? < since {
                        // Continuations of a skipped line are skipped with it.
                        if record.partial {
                            *slot = Some(Line::skipped());
                        }
                        return None;
                    }
                }
                Line {
                    timestamp: record.timestamp.to_owned(),
                    content: record.content.to_vec(),
                    complete: false,
                }
            }
        };
        if record.partial {
            *slot = Some(line);
            return None;
        }
        if !line.wanted() {
            return None; // the end of a skipped line
        }
        Some(Line {
            complete: true,
            ..line
        })
    }

    fn render(&mut self, lines: Vec<Line>) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines.into_iter().filter(Line::wanted) {
            if self.options.timestamps {
                out.extend_from_slice(line.timestamp.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&line.content);
            if line.complete {
                out.push(b'\n');
            }
        }
        if let Some(limit) = self.options.limit_bytes {
            let room = limit.saturating_sub(self.written) as usize;
            out.truncate(room);
        }
        self.written += out.len() as u64;
        out
    }
}

impl Line {
    /// Marks the continuation of a line filtered out by `since`.
    fn skipped() -> Self {
        Line {
            timestamp: String::new(),
            content: Vec::new(),
            complete: false,
        }
    }

    fn wanted(&self) -> bool {
        !self.timestamp.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Writes `records` as (second, stream, partial, content) into a fresh file.
    fn log_file(records: &[(u32, LogStream, bool, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let w = LogWriter::create(&path).unwrap();
        for (sec, stream, partial, content) in records {
            let time = t(&format!("2024-01-01T00:00:{sec:02}.5Z"));
            w.write_record(time, *stream, *partial, content.as_bytes())
                .unwrap();
        }
        (dir, path)
    }

    async fn read(path: &Path, options: LogOptions) -> String {
        String::from_utf8(read_log(path, &options).await.unwrap()).unwrap()
    }

    use LogStream::{Stderr as E, Stdout as O};

    #[test]
    fn records_round_trip_through_format_and_parse() {
        let time = t("2024-01-01T00:00:00.123456789Z");
        let raw = format_record(time, LogStream::Stderr, true, b"a b  c");
        assert_eq!(raw, b"2024-01-01T00:00:00.123456789Z stderr P a b  c\n");
        let rec = parse_record(&raw).unwrap();
        assert_eq!(rec.timestamp, "2024-01-01T00:00:00.123456789Z");
        assert_eq!(rec.stream, LogStream::Stderr);
        assert!(rec.partial);
        assert_eq!(rec.content, b"a b  c");
        assert_eq!(rec.time().unwrap(), time);
        let empty = parse_record(b"2024-01-01T00:00:00Z stdout F").unwrap();
        assert_eq!(empty.content, b"");
    }

    #[test]
    fn malformed_records_are_rejected() {
        for bad in [
            &b""[..],
            b"2024-01-01T00:00:00Z",
            b"2024-01-01T00:00:00Z stdin F x",
            b"2024-01-01T00:00:00Z stdout X x",
        ] {
            assert!(parse_record(bad).is_err(), "{bad:?}");
        }
        let rec = parse_record(b"yesterday stdout F x").unwrap();
        assert!(rec.time().is_err());
    }

    #[tokio::test]
    async fn capture_splits_long_lines_and_keeps_a_last_unterminated_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let writer = Arc::new(LogWriter::create(&path).unwrap());
        let long = "x".repeat(MAX_RECORD_BYTES + 10);
        let input = format!("one\n\n{long}\nlast");
        capture(input.as_bytes(), LogStream::Stdout, writer)
            .await
            .unwrap();
        let raw = std::fs::read(&path).unwrap();
        let tags: Vec<(bool, usize)> = raw
            .split_inclusive(|b| *b == b'\n')
            .map(|l| parse_record(l).unwrap())
            .map(|r| (r.partial, r.content.len()))
            .collect();
        assert_eq!(
            tags,
            [
                (false, 3),
                (false, 0),
                (true, MAX_RECORD_BYTES),
                (false, 10),
                (false, 4)
            ]
        );
        let text = read(&path, LogOptions::default()).await;
        assert_eq!(text, format!("one\n\n{long}\nlast\n"));
    }

    #[tokio::test]
    async fn write_line_splits_and_reader_joins_partials_per_stream() {
        let (_dir, path) = log_file(&[
            (1, O, true, "hel"),
            (1, E, false, "oops"),
            (2, O, true, "lo "),
            (3, O, false, "world"),
        ]);
        assert_eq!(
            read(&path, LogOptions::default()).await,
            "oops\nhello world\n"
        );
        let w = LogWriter::create(&path).unwrap();
        w.write_line(O, &vec![b'y'; MAX_RECORD_BYTES * 2]).unwrap();
        w.write_line(O, b"").unwrap();
        let tail = LogOptions {
            tail: Some(2),
            ..LogOptions::default()
        };
        let text = read(&path, tail).await;
        assert_eq!(text, format!("{}\n\n", "y".repeat(MAX_RECORD_BYTES * 2)));
    }

    #[tokio::test]
    async fn tail_returns_the_last_lines_and_zero_returns_none() {
        let (_dir, path) = log_file(&[(1, O, false, "a"), (2, E, false, "b"), (3, O, false, "c")]);
        let tail = |n| LogOptions {
            tail: Some(n),
            ..LogOptions::default()
        };
        assert_eq!(read(&path, tail(2)).await, "b\nc\n");
        assert_eq!(read(&path, tail(10)).await, "a\nb\nc\n");
        assert_eq!(read(&path, tail(0)).await, "");
    }

    #[tokio::test]
    async fn since_skips_older_lines_with_their_continuations() {
        let (_dir, path) = log_file(&[
            (1, O, false, "old"),
            (2, O, true, "old-"),
            (4, O, false, "continued"),
            (3, E, false, "new"),
            (5, O, false, "newer"),
        ]);
        let since = LogOptions {
            since: Some(t("2024-01-01T00:00:03Z")),
            ..LogOptions::default()
        };
        assert_eq!(read(&path, since).await, "new\nnewer\n");
    }

    #[tokio::test]
    async fn timestamps_stream_filter_and_limit_bytes_shape_the_output() {
        let (_dir, path) = log_file(&[(1, O, false, "out"), (2, E, false, "err")]);
        let stamped = LogOptions {
            timestamps: true,
            ..LogOptions::default()
        };
        assert_eq!(
            read(&path, stamped).await,
            "2024-01-01T00:00:01.500000000Z out\n2024-01-01T00:00:02.500000000Z err\n"
        );
        let stderr = LogOptions {
            stream: Some(E),
            ..LogOptions::default()
        };
        assert_eq!(read(&path, stderr).await, "err\n");
        let limited = LogOptions {
            limit_bytes: Some(6),
            ..LogOptions::default()
        };
        assert_eq!(read(&path, limited).await, "out\ner");
    }

    #[tokio::test]
    async fn malformed_lines_are_skipped() {
        let (_dir, path) = log_file(&[(1, O, false, "a")]);
        let mut raw = std::fs::read(&path).unwrap();
        raw.extend_from_slice(b"garbage\n");
        raw.extend(format_record(t("2024-01-01T00:00:09Z"), O, false, b"b"));
        std::fs::write(&path, raw).unwrap();
        assert_eq!(read(&path, LogOptions::default()).await, "a\nb\n");
    }

    #[tokio::test]
    async fn an_unfinished_partial_line_is_shown_without_newline() {
        let (_dir, path) = log_file(&[(1, O, false, "a"), (2, O, true, "half")]);
        assert_eq!(read(&path, LogOptions::default()).await, "a\nhalf");
    }

    async fn next(s: &mut BoxStream<'static, Result<Vec<u8>, LogError>>) -> Option<Vec<u8>> {
        let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
        item.expect("no chunk within 5s").map(|c| c.unwrap())
    }

    #[tokio::test]
    async fn follow_yields_appended_lines_until_exit() {
        let (_dir, path) = log_file(&[(1, O, false, "a"), (2, O, false, "b")]);
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<()>();
        let options = LogOptions {
            tail: Some(1),
            ..LogOptions::default()
        };
        let exited = async move {
            let _ = exit_rx.await;
        };
        let mut stream = follow_log(path.clone(), options, exited.boxed());
        assert_eq!(next(&mut stream).await.unwrap(), b"b\n");
        let w = LogWriter::create(&path).unwrap();
        w.write_line(E, b"c").unwrap();
        assert_eq!(next(&mut stream).await.unwrap(), b"c\n");
        // A half-written record waits for its newline.
        (&w.file)
            .write_all(b"2024-01-01T00:00:09Z stdout F d")
            .unwrap();
        tokio::time::sleep(FOLLOW_POLL * 3).await;
        (&w.file).write_all(b"one\n").unwrap();
        w.write_record(Utc::now(), O, true, b"tail").unwrap();
        assert_eq!(next(&mut stream).await.unwrap(), b"done\n");
        exit_tx.send(()).unwrap();
        assert_eq!(next(&mut stream).await.unwrap(), b"tail");
        assert!(next(&mut stream).await.is_none());
    }

    #[tokio::test]
    async fn a_large_log_streams_in_chunks_and_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let w = LogWriter::create(&path).unwrap();
        let line = "z".repeat(999);
        for _ in 0..300 {
            w.write_line(O, line.as_bytes()).unwrap();
        }
        let ready = futures::future::ready(()).boxed();
        let chunks: Vec<Vec<u8>> = follow_log(path.clone(), LogOptions::default(), ready)
            .map(Result::unwrap)
            .collect()
            .await;
        assert!(chunks.len() >= 4, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_BYTES + 1000));
        let whole = read(&path, LogOptions::default()).await;
        assert_eq!(chunks.concat(), whole.as_bytes());
        assert_eq!(whole.len(), 300 * 1000);
    }

    #[tokio::test]
    async fn follow_of_a_missing_file_yields_an_error_and_ends() {
        let mut stream = follow_log(
            PathBuf::from("/nonexistent/kaji/0.log"),
            LogOptions::default(),
            futures::future::pending().boxed(),
        );
        assert!(matches!(
            stream.next().await,
            Some(Err(LogError::Io { .. }))
        ));
        assert!(stream.next().await.is_none());
    }
}
