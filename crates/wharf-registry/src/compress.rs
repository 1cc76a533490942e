//! `--compression-format`: turning an uncompressed layer tar into a gzip or zstd
//! blob for push, computing the blob digest and the diff id on the way.

use std::io::{self, Read, Write};

use wharf_image::{media, Algorithm, Compression, Digest, Digester};

use crate::error::RegistryError;

/// Copy buffer size.
const BUFFER: usize = 256 << 10;

/// What [`compress_layer`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedLayer {
    /// Digest of the written blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's diff id).
    pub diff_id: Digest,
    /// The OCI layer media type for the compression.
    pub media_type: &'static str,
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the uncompressed tar from `input`, writes it to `output` compressed
/// with `format` (or as it is for [`Compression::None`]). Synchronous: run it on
/// a blocking thread.
///
/// # Errors
///
/// Reading, compressing or writing fails.
pub fn compress_layer(
    mut input: impl Read,
    output: impl Write,
    format: Compression,
) -> Result<CompressedLayer, RegistryError> {
    let fail = |source| RegistryError::Compress {
        format: format.name(),
        source,
    };
    let mut sink = Hashing {
        inner: output,
        digester: Digester::new(Algorithm::Sha256),
    };
    let mut diff = Digester::new(Algorithm::Sha256);
    match format {
        Compression::None => copy(&mut input, &mut sink, &mut diff).map_err(fail)?,
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(&mut sink, flate2::Compression::default());
            copy(&mut input, &mut encoder, &mut diff).map_err(fail)?;
            encoder.finish().map_err(fail)?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(&mut sink, 3).map_err(fail)?;
            copy(&mut input, &mut encoder, &mut diff).map_err(fail)?;
            encoder.finish().map_err(fail)?;
        }
    }
    sink.flush().map_err(fail)?;
    let size = sink.digester.written();
    Ok(CompressedLayer {
        digest: sink.digester.finish(),
        size,
        diff_id: diff.finish(),
        media_type: media::oci_layer_media_type(format),
    })
}

/// Copies `input` to `output`, hashing what is read into `diff`.
fn copy(input: &mut impl Read, output: &mut impl Write, diff: &mut Digester) -> io::Result<()> {
    let mut buf = vec![0; BUFFER];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        diff.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_zstd_round_trip_with_digests() {
        let tar: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let diff_id = Digest::sha256_of(&tar);
        for format in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut out = Vec::new();
            let layer = compress_layer(&tar[..], &mut out, format).unwrap();
            assert_eq!(layer.diff_id, diff_id, "{format:?}");
            assert_eq!(layer.digest, Digest::sha256_of(&out));
            assert_eq!(layer.size, out.len() as u64);
            assert_eq!(media::layer_compression(layer.media_type), Some(format));
            let mut back = Vec::new();
            match format {
                Compression::None => back = out.clone(),
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(&out[..])
                        .unwrap()
                        .read_to_end(&mut back)
                        .unwrap();
                }
            }
            assert_eq!(back, tar, "{format:?}");
        }
    }
}
