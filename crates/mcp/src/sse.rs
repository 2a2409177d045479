//! Server-sent events (WHATWG HTML, "Server-sent events", the
//! `text/event-stream` format), as MCP's streamable HTTP transport uses
//! them: each event's `data` is one JSON-RPC message; `id` makes a stream
//! resumable (`Last-Event-ID`); an event may carry an `id` and no data (a
//! server priming a stream for resumption).
//!
//! The gateway rewrites the data of the events it passes (a permitted
//! call's result gets the decision in `_meta`) and must keep everything
//! else: so the decoder keeps every field of an event and comments, and
//! [`Item::encode`] writes them again.

/// One thing in an event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// An event: the fields it had, data lines joined with `\n`.
    Event(Event),
    /// A comment line (`:` …), such as a keep-alive.
    Comment(String),
}

/// One event's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:` (the type; `None` is `message`).
    pub event: Option<String>,
    /// `id:`.
    pub id: Option<String>,
    /// `retry:`, as sent.
    pub retry: Option<String>,
    /// The `data:` lines, joined with `\n`; `None` if there was none.
    pub data: Option<String>,
}

impl Item {
    /// The item in the wire format, ending with the blank line that
    /// dispatches it.
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            Item::Comment(c) => format!(":{c}\n\n"),
            Item::Event(e) => {
                let mut out = String::new();
                for (name, value) in [("event", &e.event), ("id", &e.id), ("retry", &e.retry)] {
                    if let Some(v) = value {
                        out.push_str(&format!("{name}: {v}\n"));
                    }
                }
                if let Some(data) = &e.data {
                    for line in data.split('\n') {
                        out.push_str("data: ");
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                out.push('\n');
                out
            }
        }
    }
}

/// An incremental decoder: bytes in, complete items out. A CR that ends
/// the bytes so far is held until the next byte says whether an LF
/// follows (CR LF is one line end).
pub struct Decoder {
    /// Bytes not yet a complete line.
    pending: Vec<u8>,
    /// The event being read.
    event: Event,
    /// Whether any field of it has been read.
    started: bool,
    /// The largest event (in bytes of its lines) accepted.
    max_event: usize,
    /// Bytes of the event being read so far.
    event_bytes: usize,
}

impl Decoder {
    /// A decoder that refuses events larger than `max_event` bytes.
    #[must_use]
    pub fn new(max_event: usize) -> Decoder {
        Decoder {
            pending: Vec::new(),
            event: Event::default(),
            started: false,
            max_event,
            event_bytes: 0,
        }
    }

    /// The items completed by `bytes`.
    ///
    /// # Errors
    ///
    /// An event larger than the limit, or a line that is not UTF-8.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Item>, String> {
        self.pending.extend_from_slice(bytes);
        let mut items = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.pending.len() {
            let end = match self.pending[i] {
                b'\n' => i + 1,
                // A CR ends a line; a CR LF pair is one line end, so a CR
                // at the end of what we have waits for the next byte.
                b'\r' if i + 1 == self.pending.len() => break,
                b'\r' if self.pending[i + 1] == b'\n' => i + 2,
                b'\r' => i + 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let line = std::str::from_utf8(&self.pending[start..i])
                .map_err(|_| "an event-stream line is not UTF-8".to_string())?
                .to_string();
            self.line(&line, &mut items)?;
            start = end;
            i = end;
        }
        self.pending.drain(..start);
        if self.event_bytes + self.pending.len() > self.max_event {
            return Err(format!("an event is larger than {} bytes", self.max_event));
        }
        Ok(items)
    }

    fn line(&mut self, line: &str, items: &mut Vec<Item>) -> Result<(), String> {
        if line.is_empty() {
            if self.started {
                items.push(Item::Event(std::mem::take(&mut self.event)));
            }
            self.started = false;
            self.event_bytes = 0;
            return Ok(());
        }
        self.event_bytes += line.len() + 1;
        if self.event_bytes > self.max_event {
            return Err(format!("an event is larger than {} bytes", self.max_event));
        }
        if let Some(comment) = line.strip_prefix(':') {
            if !self.started {
                items.push(Item::Comment(comment.to_string()));
            }
            return Ok(());
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        let slot = match name {
            "event" => &mut self.event.event,
            "id" => &mut self.event.id,
            "retry" => &mut self.event.retry,
            "data" => {
                match &mut self.event.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.event.data = Some(value.to_string()),
                }
                self.started = true;
                return Ok(());
            }
            // Unknown fields are ignored (and not passed on).
            _ => return Ok(()),
        };
        *slot = Some(value.to_string());
        self.started = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<Item> {
        let mut d = Decoder::new(1 << 20);
        chunks.iter().flat_map(|c| d.feed(c).unwrap()).collect()
    }

    #[test]
    fn events_split_anywhere_decode_the_same() {
        let stream = b"id: 7\r\nevent: message\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\nid: 8\ndata:\n\ndata: x\rdata: y\r\r\n";
        let whole = decode_all(&[stream]);
        assert_eq!(
            whole,
            vec![
                Item::Event(Event {
                    event: Some("message".into()),
                    id: Some("7".into()),
                    retry: None,
                    data: Some("{\"a\":1}".into()),
                }),
                Item::Comment(" keep-alive".into()),
                Item::Event(Event {
                    id: Some("8".into()),
                    data: Some(String::new()),
                    ..Event::default()
                }),
                Item::Event(Event {
                    data: Some("x\ny".into()),
                    ..Event::default()
                }),
            ]
        );
        for cut in 0..stream.len() {
            assert_eq!(
                decode_all(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut {cut}"
            );
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(&bytes), whole);
    }

    #[test]
    fn encoding_then_decoding_gives_the_items_back() {
        let items = vec![
            Item::Event(Event {
                event: Some("message".into()),
                id: Some("abc_1".into()),
                retry: Some("1000".into()),
                data: Some("line one\nline two".into()),
            }),
            Item::Comment("ping".into()),
            Item::Event(Event {
                id: Some("prime".into()),
                data: Some(String::new()),
                ..Event::default()
            }),
        ];
        let wire: String = items.iter().map(Item::encode).collect();
        assert_eq!(decode_all(&[wire.as_bytes()]), items);
    }

    #[test]
    fn an_oversized_event_is_refused_even_without_a_line_end() {
        let mut d = Decoder::new(64);
        assert!(d.feed(&[b'x'; 65]).is_err());
        let mut d = Decoder::new(64);
        assert!(d.feed(b"data: 0123456789\n".repeat(5).as_slice()).is_err());
        let mut d = Decoder::new(64);
        assert!(d.feed(b"data: \xff\n\n").is_err());
    }
}
