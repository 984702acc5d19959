//! Bounded inflation of raw DEFLATE streams (RFC 1951) from untrusted input: compressed
//! `Entries` frames here, compressed runs of changes in a node's envelopes.

/// Why a stream was refused.
#[derive(Debug)]
pub enum InflateError {
    /// It inflates to more than the limit (a decompression bomb); at most one byte past
    /// the limit was ever held.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// It is not a valid DEFLATE stream.
    Corrupt(flate2::DecompressError),
    /// It stops before its end.
    Truncated,
    /// Bytes follow its end.
    Trailing,
}

/// Inflates a whole raw DEFLATE stream into memory, refusing more than `limit` bytes, a
/// stream that stops before its end, and bytes after its end.
pub fn inflate_bounded(stream: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    const STEP: usize = 64 << 10;
    let mut inflater = flate2::Decompress::new(false);
    let mut out: Vec<u8> = Vec::new();
    loop {
        // Room for at most one byte past the limit, so a bomb is seen and never held whole.
        let room = limit.saturating_add(1).saturating_sub(out.len());
        if room == 0 {
            return Err(InflateError::TooLarge { limit });
        }
        out.reserve_exact(room.min(STEP));
        let (read, written) = (inflater.total_in() as usize, out.len());
        let status = inflater
            .decompress_vec(&stream[read..], &mut out, flate2::FlushDecompress::None)
            .map_err(InflateError::Corrupt)?;
        if status == flate2::Status::StreamEnd {
            break;
        }
        if inflater.total_in() as usize == read && out.len() == written {
            return Err(InflateError::Truncated);
        }
    }
    if out.len() > limit {
        return Err(InflateError::TooLarge { limit });
    }
    if inflater.total_in() as usize != stream.len() {
        return Err(InflateError::Trailing);
    }
    Ok(out)
}
