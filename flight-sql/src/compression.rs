//! Arrow IPC body compression of results, asked for by the client.
//!
//! Flight SQL has no way to negotiate compression, but the Arrow IPC format carries it in each
//! record batch message: a client that reads Arrow IPC decodes compressed bodies without being
//! told. A client on a slow link (a federation peer in another city) asks for it with the gRPC
//! request header [`COMPRESSION_HEADER`] on `DoGet`; without it, results are sent uncompressed,
//! as every client expects (spec UDN-FED-7).

use std::str::FromStr;

use arrow_flight::FlightData;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::ipc::{CompressionType, root_as_message};

use crate::error::{Error, Result};

/// The gRPC request header naming the compression a client asks for: `zstd`, `lz4` (LZ4
/// frame) or `none`.
pub const COMPRESSION_HEADER: &str = "udn-ipc-compression";

/// The compression of IPC message bodies in a result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpcCompression {
    /// Uncompressed, as Flight SQL clients expect by default.
    #[default]
    None,
    /// LZ4 frame: fast, about half the bytes of typical tables.
    Lz4,
    /// Zstandard: more CPU, fewer bytes; for links slower than about 100 Mbit/s.
    Zstd,
}

impl IpcCompression {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            IpcCompression::None => "none",
            IpcCompression::Lz4 => "lz4",
            IpcCompression::Zstd => "zstd",
        }
    }

    /// The compression asked for by a request's metadata: none without the header, an
    /// `InvalidRequest` naming the header for a value that is not one of the three.
    pub fn requested(metadata: &tonic::metadata::MetadataMap) -> Result<Self> {
        match metadata.get(COMPRESSION_HEADER) {
            None => Ok(IpcCompression::None),
            Some(value) => value
                .to_str()
                .map_err(|_| unknown(&String::from_utf8_lossy(value.as_bytes())))?
                .parse(),
        }
    }

    /// IPC write options that compress bodies this way.
    pub fn write_options(self) -> Result<IpcWriteOptions> {
        let codec = match self {
            IpcCompression::None => None,
            IpcCompression::Lz4 => Some(CompressionType::LZ4_FRAME),
            IpcCompression::Zstd => Some(CompressionType::ZSTD),
        };
        IpcWriteOptions::default()
            .try_with_compression(codec)
            .map_err(|e| Error::Internal(format!("IPC compression {}: {e}", self.as_str())))
    }
}

impl std::fmt::Display for IpcCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpcCompression {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(IpcCompression::None),
            "lz4" | "lz4_frame" => Ok(IpcCompression::Lz4),
            "zstd" => Ok(IpcCompression::Zstd),
            _ => Err(unknown(value)),
        }
    }
}

/// Checks a result message from another node before Arrow's reader decodes it: every buffer of
/// its batch lies inside its body, and a compressed batch declares at most `max_decompressed`
/// bytes once decompressed. Arrow's reader allocates each compressed buffer at the size its
/// first 8 bytes declare, unchecked, so a forged message of a few bytes could otherwise make
/// the receiver allocate terabytes (and abort). `Err` says what is wrong.
pub fn check_result_message(data: &FlightData, max_decompressed: usize) -> Result<(), String> {
    if data.data_header.is_empty() {
        return Ok(());
    }
    let message = root_as_message(&data.data_header)
        .map_err(|e| format!("a message whose IPC header does not decode: {e}"))?;
    let Some(batch) = crate::handle::batch_of(&message) else {
        return Ok(());
    };
    let body = data.data_body.as_ref();
    let compressed = batch.compression().is_some();
    let mut declared: usize = 0;
    for buffer in batch.buffers().into_iter().flatten() {
        let (offset, length) = (buffer.offset(), buffer.length());
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(length).ok())
            .and_then(|(offset, length)| Some(offset..offset.checked_add(length)?))
            .filter(|range| range.end <= body.len())
            .ok_or_else(|| "a buffer outside its message's body".to_string())?;
        let bytes = &body[range];
        let size = if compressed && !bytes.is_empty() {
            let prefix = bytes
                .first_chunk::<8>()
                .ok_or_else(|| "a compressed buffer without its length".to_string())?;
            match i64::from_le_bytes(*prefix) {
                // Stored uncompressed after the prefix.
                -1 => bytes.len() - 8,
                n => usize::try_from(n)
                    .map_err(|_| "a compressed buffer of negative length".to_string())?,
            }
        } else {
            bytes.len()
        };
        declared = declared.saturating_add(size);
    }
    if declared > max_decompressed {
        return Err(format!(
            "a batch of {declared} bytes once decompressed; at most {max_decompressed} accepted"
        ));
    }
    Ok(())
}

fn unknown(value: &str) -> Error {
    let shown: String = value.chars().take(32).collect();
    Error::InvalidRequest(format!(
        "{COMPRESSION_HEADER}: unknown compression {shown:?}; use zstd, lz4 or none"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_header() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(
            IpcCompression::requested(&metadata).unwrap(),
            IpcCompression::None
        );
        metadata.insert(COMPRESSION_HEADER, "ZSTD".parse().unwrap());
        assert_eq!(
            IpcCompression::requested(&metadata).unwrap(),
            IpcCompression::Zstd
        );
        metadata.insert(COMPRESSION_HEADER, "lz4".parse().unwrap());
        assert_eq!(
            IpcCompression::requested(&metadata).unwrap(),
            IpcCompression::Lz4
        );
        metadata.insert(COMPRESSION_HEADER, "brotli".parse().unwrap());
        let err = IpcCompression::requested(&metadata).unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
        assert!(err.to_string().contains("udn-ipc-compression"), "{err}");
        assert!(err.to_string().contains("brotli"), "{err}");
    }

    /// One batch of 100,000 equal values, encoded as a node sends it with `codec`.
    fn encoded(codec: IpcCompression) -> Vec<FlightData> {
        use datafusion::arrow::array::{Int64Array, RecordBatch};
        use futures::TryStreamExt;
        let batch = RecordBatch::try_from_iter([(
            "a",
            std::sync::Arc::new(Int64Array::from(vec![7; 100_000])) as _,
        )])
        .unwrap();
        let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
            .with_options(codec.write_options().unwrap())
            .build(futures::stream::iter([Ok(batch)]));
        futures::executor::block_on(stream.try_collect()).unwrap()
    }

    #[test]
    fn checks_what_a_result_message_declares() {
        for codec in [IpcCompression::None, IpcCompression::Zstd] {
            let messages = encoded(codec);
            // 800,000 bytes of values, sent in far fewer when compressed.
            for data in &messages {
                check_result_message(data, 1 << 20).unwrap();
            }
            let batch = messages.last().unwrap();
            let err = check_result_message(batch, 100_000).unwrap_err();
            assert!(err.contains("800000 bytes"), "{err}");
        }
        // A compressed buffer whose prefix declares a petabyte is refused before any reader
        // allocates it.
        let mut forged = encoded(IpcCompression::Zstd).pop().unwrap();
        let mut body = forged.data_body.to_vec();
        let message = root_as_message(&forged.data_header).unwrap();
        let values = message
            .header_as_record_batch()
            .unwrap()
            .buffers()
            .unwrap()
            .get(1);
        let at = values.offset() as usize;
        body[at..at + 8].copy_from_slice(&(1i64 << 50).to_le_bytes());
        forged.data_body = body.into();
        let err = check_result_message(&forged, 64 << 20).unwrap_err();
        assert!(err.contains("once decompressed"), "{err}");
        // A buffer pointing past the body.
        let mut cut = encoded(IpcCompression::None).pop().unwrap();
        cut.data_body = cut.data_body.slice(..100);
        let err = check_result_message(&cut, 64 << 20).unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn every_codec_has_write_options() {
        for codec in [
            IpcCompression::None,
            IpcCompression::Lz4,
            IpcCompression::Zstd,
        ] {
            codec.write_options().unwrap();
        }
    }
}
