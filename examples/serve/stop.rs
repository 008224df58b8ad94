//! OpenAI's `stop` strings on streamed text: the answer ends just before the first stop
//! string, which is not sent. Text that might be the start of a stop string is held back
//! until the next chunk shows whether it is.

/// The stop-string filter of one answer.
#[derive(Debug, Default)]
pub struct StopText {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopText {
    /// A filter for `stops` (none: every chunk passes as it is).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops,
            ..Self::default()
        }
    }

    /// Whether a stop string was seen: later text is dropped.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Takes the next chunk of the answer and returns the text that is sure to be sent.
    pub fn push(&mut self, chunk: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.held.push_str(chunk);
        if let Some(at) = self.first_stop() {
            self.stopped = true;
            self.held.truncate(at);
            return std::mem::take(&mut self.held);
        }
        let keep = self.partial_stop_len();
        let rest = self.held.split_off(self.held.len() - keep);
        std::mem::replace(&mut self.held, rest)
    }

    /// The text held back at the end of the answer (no stop string followed it).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Where the earliest stop string starts in the held text.
    fn first_stop(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// The length of the longest end of the held text that begins a stop string.
    fn partial_stop_len(&self) -> usize {
        let held = self.held.as_str();
        (1..=held.len())
            .rev()
            .filter(|&n| held.is_char_boundary(held.len() - n))
            .find(|&n| {
                let tail = &held[held.len() - n..];
                self.stops
                    .iter()
                    .any(|s| s.len() > n && s.starts_with(tail))
            })
            .unwrap_or(0)
    }
}
