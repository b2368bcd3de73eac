//! The framing decoder: bytes in any chunking in, complete questions out.
//!
//! It performs no I/O. A server reads from its socket straight into
//! [`Decoder::read_buf`], reports how much arrived with [`Decoder::filled`],
//! then takes questions with [`Decoder::next_question`] until it returns
//! `Ok(None)`. The same decoder serves the blocking, the polling and the
//! async servers, so the framing rules live in exactly one place.

use thiserror::Error;

/// How much room [`Decoder::read_buf`] offers beyond one maximal question.
///
/// Questions are about 25 bytes, so one 4 KiB read carries a deep pipeline
/// while an idle connection's buffer stays small.
pub const READ_CHUNK: usize = 4096;

/// `--max-request` bytes arrived with no `?`: the client is answered
/// `Error: request too long.` and the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("request too long: no `?` within {max_request} bytes")]
pub struct RequestTooLong {
    /// The limit that was reached.
    pub max_request: usize,
}

/// Splits a byte stream into questions: every byte up to and including the
/// first `?`, after skipping ASCII whitespace (space, tab, CR, LF).
///
/// It never holds more than `max_request + READ_CHUNK` bytes. Its buffer is
/// allocated when the first read comes, so an idle connection costs none,
/// and small: [`READ_CHUNK`] beyond one question of up to `READ_CHUNK`
/// bytes. It doubles only while a question longer than that is arriving,
/// so a large `--max-request` costs memory only to a client that uses it.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes `start..end` are received and not yet decoded.
    buf: Box<[u8]>,
    // Offsets into `buf`, which holds at most `max_request + READ_CHUNK`
    // bytes (16 MiB and 4 KiB at most): 32 bits hold them, and every
    // connection, idle or not, is 16 bytes the smaller for it.
    start: u32,
    end: u32,
    /// Bytes `start..start + searched` are known to hold no `?`, so a
    /// question trickling in byte by byte is not scanned again each time.
    searched: u32,
    max_request: u32,
}

impl Decoder {
    /// A decoder that rejects questions longer than `max_request` bytes
    /// (the `?` included). A `max_request` of 0 is taken as 1, and one
    /// beyond what 32 bits can index (less a read) as that.
    pub fn new(max_request: usize) -> Self {
        let most = u32::MAX as usize - READ_CHUNK;
        Self {
            buf: Box::default(),
            start: 0,
            end: 0,
            searched: 0,
            max_request: max_request.clamp(1, most) as u32,
        }
    }

    /// The free space to read into; never empty once every complete
    /// question has been taken with [`next_question`](Self::next_question).
    ///
    /// The undecoded tail is moved to the front first, so the buffer never
    /// grows: a partial question is at most `max_request - 1` bytes, and the
    /// rest of the buffer is room for the next read.
    pub fn read_buf(&mut self) -> &mut [u8] {
        let most = self.max_request as usize + READ_CHUNK;
        if self.buf.is_empty() {
            self.buf = vec![0; most.min(2 * READ_CHUNK)].into_boxed_slice();
        }
        let (start, mut end) = (self.start as usize, self.end as usize);
        if start > 0 {
            self.buf.copy_within(start..end, 0);
            end -= start;
            self.start = 0;
            self.end = end as u32;
        }
        if end == self.buf.len() {
            // Full of one question still arriving (it is shorter than
            // `max_request`, or it would have been refused): room for more.
            let mut grown = vec![0; (2 * self.buf.len()).min(most)].into_boxed_slice();
            grown[..end].copy_from_slice(&self.buf[..end]);
            self.buf = grown;
        }
        &mut self.buf[end..]
    }

    /// Records that `n` bytes were written at the front of [`read_buf`](Self::read_buf).
    ///
    /// # Panics
    /// If `n` is more than the space `read_buf` offered.
    pub fn filled(&mut self, n: usize) {
        let end = self.end as usize + n;
        assert!(end <= self.buf.len(), "filled past read_buf");
        self.end = end as u32;
    }

    /// The next complete question, if one has arrived.
    ///
    /// `Ok(None)` means more bytes are needed. After `Err`, the connection
    /// must be closed: what follows can no longer be framed.
    pub fn next_question(&mut self) -> Result<Option<&[u8]>, RequestTooLong> {
        let (mut start, end) = (self.start as usize, self.end as usize);
        let max_request = self.max_request as usize;
        if self.searched == 0 {
            while start < end && self.buf[start].is_ascii_whitespace() {
                start += 1;
            }
            self.start = start as u32;
        }
        let window_end = end.min(start + max_request);
        let from = start + self.searched as usize;
        match self.buf[from..window_end].iter().position(|&b| b == b'?') {
            Some(offset) => {
                let question = start..from + offset + 1;
                self.start = question.end as u32;
                self.searched = 0;
                Ok(Some(&self.buf[question]))
            }
            None if window_end - start == max_request => Err(RequestTooLong { max_request }),
            None => {
                self.searched = (window_end - start) as u32;
                Ok(None)
            }
        }
    }

    /// Takes every complete question left, unanswered, and returns how
    /// many there were: the connection is closing without answering them
    /// (the shutdown grace is over), and they are counted as dropped.
    pub fn drop_complete(&mut self) -> u64 {
        let mut dropped = 0;
        while let Ok(Some(_)) = self.next_question() {
            dropped += 1;
        }
        dropped
    }

    /// The bytes of a question that has begun but not ended (whitespace
    /// before it excluded); what is dropped if the client closes now.
    pub fn partial(&self) -> &[u8] {
        let undecoded = &self.buf[self.start as usize..self.end as usize];
        let first = undecoded.iter().position(|b| !b.is_ascii_whitespace());
        first.map_or(&[], |first| &undecoded[first..])
    }

    /// Whether [`next_question`](Self::next_question) would return
    /// something now: a complete question, or a request too long. As it
    /// does, whitespace before the question is skipped first.
    pub fn has_complete(&self) -> bool {
        let (mut start, end) = (self.start as usize, self.end as usize);
        while start < end && self.buf[start].is_ascii_whitespace() {
            start += 1;
        }
        let max_request = self.max_request as usize;
        let window_end = end.min(start + max_request);
        window_end - start == max_request || self.buf[start..window_end].contains(&b'?')
    }

    /// The bytes this decoder holds in memory (its capacity, 0 until the first read).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of the given sizes and collects what comes out.
    pub(crate) fn decode_in_pieces(
        stream: &[u8],
        pieces: &[usize],
        max_request: usize,
    ) -> (Vec<Vec<u8>>, Option<RequestTooLong>) {
        let mut decoder = Decoder::new(max_request);
        let mut questions = Vec::new();
        let mut rest = stream;
        let mut sizes = pieces.iter().copied().cycle();
        while !rest.is_empty() {
            let room = decoder.read_buf();
            assert!(!room.is_empty(), "read_buf must offer room once drained");
            let n = sizes
                .next()
                .unwrap_or(1)
                .clamp(1, room.len())
                .min(rest.len());
            room[..n].copy_from_slice(&rest[..n]);
            decoder.filled(n);
            rest = &rest[n..];
            loop {
                match decoder.next_question() {
                    Ok(Some(question)) => questions.push(question.to_vec()),
                    Ok(None) => break,
                    Err(error) => return (questions, Some(error)),
                }
                assert!(decoder.capacity() <= max_request.max(1) + READ_CHUNK);
            }
        }
        (questions, None)
    }

    #[test]
    fn a_large_max_request_costs_memory_only_to_a_long_question() {
        let max = crate::config::MAX_MAX_REQUEST;
        let mut decoder = Decoder::new(max);
        decoder.read_buf()[..4].copy_from_slice(b"Why?");
        decoder.filled(4);
        assert_eq!(decoder.next_question(), Ok(Some(&b"Why?"[..])));
        assert_eq!(decoder.capacity(), 2 * READ_CHUNK);
        let mut long = vec![b'x'; 100_000];
        long.push(b'?');
        let (questions, error) = decode_in_pieces(&long, &[READ_CHUNK], max);
        assert_eq!((questions, error), (vec![long], None));
    }

    #[test]
    fn drop_complete_counts_the_questions_left_but_not_a_partial_one() {
        let mut decoder = Decoder::new(1024);
        let stream = b"Now is better than? Flat is better than? Spar";
        decoder.read_buf()[..stream.len()].copy_from_slice(stream);
        decoder.filled(stream.len());
        assert_eq!(decoder.drop_complete(), 2);
        assert_eq!(decoder.partial(), b"Spar");
    }

    #[test]
    fn skips_whitespace_between_questions() {
        let (questions, error) = decode_in_pieces(
            b" \r\n\tNow is better than?\nFlat is better than?\r\n",
            &[64],
            1024,
        );
        assert_eq!(
            questions,
            vec![
                b"Now is better than?".to_vec(),
                b"Flat is better than?".to_vec()
            ]
        );
        assert_eq!(error, None);
    }

    #[test]
    fn keeps_whitespace_inside_a_question() {
        let (questions, _) = decode_in_pieces(b"  a b\t?", &[1], 1024);
        assert_eq!(questions, vec![b"a b\t?".to_vec()]);
    }

    #[test]
    fn a_question_of_exactly_max_request_bytes_is_accepted() {
        let (questions, error) = decode_in_pieces(b"abc?abcd?", &[1], 4);
        assert_eq!(questions, vec![b"abc?".to_vec()]);
        assert_eq!(error, Some(RequestTooLong { max_request: 4 }));
    }

    #[test]
    fn reports_too_long_once_max_request_bytes_have_no_question_mark() {
        let mut decoder = Decoder::new(3);
        decoder.read_buf()[..2].copy_from_slice(b"ab");
        decoder.filled(2);
        assert_eq!(decoder.next_question(), Ok(None));
        assert_eq!(decoder.partial(), b"ab");
        decoder.read_buf()[0] = b'c';
        decoder.filled(1);
        assert_eq!(
            decoder.next_question(),
            Err(RequestTooLong { max_request: 3 })
        );
    }

    #[test]
    fn partial_ignores_leading_whitespace() {
        let mut decoder = Decoder::new(100);
        assert_eq!(decoder.partial(), b"");
        decoder.read_buf()[..6].copy_from_slice(b"x? \nBe");
        decoder.filled(6);
        assert_eq!(decoder.next_question(), Ok(Some(&b"x?"[..])));
        assert_eq!(decoder.next_question(), Ok(None));
        assert_eq!(decoder.partial(), b"Be");
        assert!(
            !decoder.has_complete(),
            "a partial question is not complete"
        );
    }

    #[test]
    fn allocates_nothing_until_the_first_read() {
        let decoder = Decoder::new(1024);
        assert_eq!(decoder.capacity(), 0);
    }
}
