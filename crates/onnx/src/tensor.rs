//! Conversion between ONNX tensors and `f32` arrays. Weights are analysed and quantized in
//! f32 whatever their stored type; writing back keeps the tensor's own type.

use crate::error::{OnnxError, Result};
use crate::pb::TensorProto;
use crate::pb::tensor_proto::DataType as PbType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

/// The element types bitsearch reads and writes as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    F32,
    F16,
    Bf16,
    F64,
    I64,
    I32,
}

impl DataType {
    /// The type of an ONNX `elem_type` / `data_type` code, if it is numeric and supported.
    pub fn from_onnx(code: i32) -> Option<Self> {
        match PbType::try_from(code).ok()? {
            PbType::Float => Some(Self::F32),
            PbType::Float16 => Some(Self::F16),
            PbType::Bfloat16 => Some(Self::Bf16),
            PbType::Double => Some(Self::F64),
            PbType::Int64 => Some(Self::I64),
            PbType::Int32 => Some(Self::I32),
            _ => None,
        }
    }

    pub fn to_onnx(self) -> i32 {
        let t = match self {
            Self::F32 => PbType::Float,
            Self::F16 => PbType::Float16,
            Self::Bf16 => PbType::Bfloat16,
            Self::F64 => PbType::Double,
            Self::I64 => PbType::Int64,
            Self::I32 => PbType::Int32,
        };
        t as i32
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::Bf16 | Self::F64)
    }
}

fn tensor_error(t: &TensorProto, reason: impl Into<String>) -> OnnxError {
    OnnxError::Tensor { name: t.name().to_string(), reason: reason.into() }
}

/// Most values a tensor may declare: 8-byte values past it would not fit in memory, and counts,
/// byte sizes and parameter sums below it cannot overflow.
const MAX_VALUES: usize = isize::MAX as usize / 8;

/// The tensor's dimensions as `usize`, rejecting negative ones and shapes of more than
/// [`MAX_VALUES`] values (a damaged file's shape is not trusted to fit).
pub(crate) fn dims(t: &TensorProto) -> Result<Vec<usize>> {
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| tensor_error(t, format!("negative dimension {d}"))))
        .collect::<Result<Vec<_>>>()?;
    match dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
        Some(n) if n <= MAX_VALUES => Ok(dims),
        _ => Err(tensor_error(t, format!("shape {dims:?} holds more values than fit in memory"))),
    }
}

/// Reads any supported numeric tensor as f32 (integers convert exactly up to 2^24).
pub fn tensor_to_f32(t: &TensorProto) -> Result<ArrayD<f32>> {
    let shape = dims(t)?;
    let count: usize = shape.iter().product();
    let dtype = DataType::from_onnx(t.data_type())
        .ok_or_else(|| tensor_error(t, format!("unsupported data type code {}", t.data_type())))?;
    if t.data_location() == crate::pb::tensor_proto::DataLocation::External {
        return Err(tensor_error(t, "data still lives in an external file (load the model with Model::load)"));
    }
    let values: Vec<f32> = match t.raw_data.as_ref().filter(|raw| !raw.is_empty()) {
        Some(raw) => {
            if raw.len() != count * dtype.size_bytes() {
                return Err(tensor_error(
                    t,
                    format!(
                        "raw data holds {} bytes, shape {:?} needs {}",
                        raw.len(),
                        shape,
                        count * dtype.size_bytes()
                    ),
                ));
            }
            decode_raw(raw, dtype)
        }
        None => match dtype {
            DataType::F32 => t.float_data.clone(),
            DataType::F64 => t.double_data.iter().map(|&v| v as f32).collect(),
            DataType::I64 => t.int64_data.iter().map(|&v| v as f32).collect(),
            DataType::I32 => t.int32_data.iter().map(|&v| v as f32).collect(),
            // 16-bit floats are stored as their bit patterns in int32_data.
            DataType::F16 => t.int32_data.iter().map(|&v| f16::from_bits(v as u16).to_f32()).collect(),
            DataType::Bf16 => t.int32_data.iter().map(|&v| bf16::from_bits(v as u16).to_f32()).collect(),
        },
    };
    ArrayD::from_shape_vec(IxDyn(&shape), values)
        .map_err(|_| tensor_error(t, format!("holds a number of values that does not fit shape {shape:?}")))
}

fn decode_raw(raw: &[u8], dtype: DataType) -> Vec<f32> {
    match dtype {
        DataType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DataType::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DataType::Bf16 => raw.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DataType::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        DataType::I64 => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        DataType::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
    }
}

/// Builds a tensor of type `dtype` from f32 values (rounded to the nearest representable value).
pub fn tensor_from_f32(name: &str, values: &ArrayD<f32>, dtype: DataType) -> TensorProto {
    let mut raw = Vec::with_capacity(values.len() * dtype.size_bytes());
    for &v in values.iter() {
        match dtype {
            DataType::F32 => raw.extend_from_slice(&v.to_le_bytes()),
            DataType::F16 => raw.extend_from_slice(&f16::from_f32(v).to_le_bytes()),
            DataType::Bf16 => raw.extend_from_slice(&bf16::from_f32(v).to_le_bytes()),
            DataType::F64 => raw.extend_from_slice(&f64::from(v).to_le_bytes()),
            DataType::I64 => raw.extend_from_slice(&(v.round() as i64).to_le_bytes()),
            DataType::I32 => raw.extend_from_slice(&(v.round() as i32).to_le_bytes()),
        }
    }
    TensorProto {
        name: Some(name.to_string()),
        dims: values.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(dtype.to_onnx()),
        raw_data: Some(raw.into()),
        ..Default::default()
    }
}

/// An int64 tensor, as shape operands of Reshape and friends need.
pub fn tensor_from_i64(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::I64.to_onnx()),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into()),
        ..Default::default()
    }
}

/// Integer data of a quantized tensor, in the element type it is stored as.
#[derive(Debug, Clone, Copy)]
pub enum Codes<'a> {
    /// Signed 2-bit, four per byte (first element in the lowest two bits), opset 25.
    Int2(&'a [i8]),
    /// Signed 4-bit, two per byte (first element in the low nibble), opset 21.
    Int4(&'a [i8]),
    Int8(&'a [i8]),
    Uint8(&'a [u8]),
    Int32(&'a [i32]),
    /// FLOAT8E4M3FN bit patterns, one per byte.
    Float8E4m3(&'a [u8]),
}

impl Codes<'_> {
    fn len(&self) -> usize {
        match self {
            Codes::Int2(v) | Codes::Int4(v) | Codes::Int8(v) => v.len(),
            Codes::Uint8(v) | Codes::Float8E4m3(v) => v.len(),
            Codes::Int32(v) => v.len(),
        }
    }
}

/// A tensor of shape `dims` holding `codes`; Int2 values must lie in −2..=1, Int4 ones in −8..=7.
///
/// # Panics
/// If `codes` does not hold one value per element of `dims`.
pub fn tensor_from_codes(name: &str, dims: &[usize], codes: Codes<'_>) -> TensorProto {
    assert_eq!(codes.len(), dims.iter().product::<usize>(), "tensor '{name}': codes do not fit {dims:?}");
    let (data_type, raw): (PbType, Vec<u8>) = match codes {
        Codes::Int2(v) => (PbType::Int2, pack(v, 2)),
        Codes::Int4(v) => (PbType::Int4, pack(v, 4)),
        Codes::Int8(v) => (PbType::Int8, v.iter().map(|&q| q as u8).collect()),
        Codes::Uint8(v) => (PbType::Uint8, v.to_vec()),
        Codes::Int32(v) => (PbType::Int32, v.iter().flat_map(|q| q.to_le_bytes()).collect()),
        Codes::Float8E4m3(v) => (PbType::Float8e4m3fn, v.to_vec()),
    };
    TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(data_type as i32),
        raw_data: Some(raw.into()),
        ..Default::default()
    }
}

/// Two's-complement codes of `bits` bits packed `8 / bits` to a byte, the first element in the
/// lowest bits (ONNX's layout of INT4 and INT2).
fn pack(codes: &[i8], bits: usize) -> Vec<u8> {
    let mask = (1u8 << bits) - 1;
    codes
        .chunks(8 / bits)
        .map(|chunk| chunk.iter().enumerate().fold(0u8, |byte, (i, &q)| byte | (((q as u8) & mask) << (i * bits))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_raw_data() {
        let values = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.0, 1.0, -2.0, 0.5, 3.0, -0.25]).unwrap();
        for dtype in [DataType::F32, DataType::F16, DataType::Bf16, DataType::F64, DataType::I64, DataType::I32] {
            let t = tensor_from_f32("w", &values, dtype);
            let back = tensor_to_f32(&t).unwrap();
            let expected = if dtype.is_float() { values.clone() } else { values.mapv(f32::round) };
            assert_eq!(back, expected, "{dtype:?}");
        }
    }

    #[test]
    fn typed_fields_are_read_when_raw_data_is_absent() {
        let t = TensorProto {
            name: Some("h".into()),
            dims: vec![2],
            data_type: Some(DataType::F16.to_onnx()),
            int32_data: vec![f16::from_f32(1.5).to_bits() as i32, f16::from_f32(-2.0).to_bits() as i32],
            ..Default::default()
        };
        assert_eq!(tensor_to_f32(&t).unwrap().as_slice().unwrap(), &[1.5, -2.0]);
    }

    #[test]
    fn int4_and_int2_codes_pack_the_first_element_lowest() {
        let t = tensor_from_codes("q", &[3], Codes::Int4(&[-1, 7, -8]));
        assert_eq!(t.raw_data.as_deref(), Some(&[0x7f, 0x08][..]));
        assert_eq!(t.data_type(), PbType::Int4 as i32);
        let t = tensor_from_codes("q2", &[5], Codes::Int2(&[-2, 1, 0, -1, 1]));
        assert_eq!(t.raw_data.as_deref(), Some(&[0b1100_0110, 0b01][..]));
        assert_eq!(t.data_type(), PbType::Int2 as i32);
        let t = tensor_from_codes("b", &[2], Codes::Int32(&[-2, 3]));
        assert_eq!(t.raw_data.as_deref().map(<[u8]>::len), Some(8));
    }

    #[test]
    fn wrong_raw_length_is_an_error_naming_the_tensor() {
        let mut t = tensor_from_f32("w", &ArrayD::zeros(IxDyn(&[4])), DataType::F32);
        t.raw_data = Some(vec![0u8; 7].into());
        let message = tensor_to_f32(&t).unwrap_err().to_string();
        assert!(message.contains("'w'") && message.contains("7 bytes"), "{message}");
    }
}
