//! Errors of the quantizers. Each says what was expected, so a bad configuration reads as a fix.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("bit-width {bits} is outside the supported range {min}..={max}")]
    Bits { bits: u8, min: u8, max: u8 },
    #[error("output channel {channel}: bit-width {bits} is outside the supported weight range")]
    ChannelBits { channel: usize, bits: u8 },
    #[error("{got} per-channel bit-widths given, expected one per output channel ({expected})")]
    ChannelBitsLen { got: usize, expected: usize },
    #[error("channel axis {axis} is out of range for a {ndim}-D weight (expected an axis below {ndim})")]
    Axis { axis: usize, ndim: usize },
    #[error("group size must be at least 1, got 0")]
    GroupSize,
    #[error("MSE clipping search needs at least 1 grid point, got 0")]
    Grid,
    #[error("weight has no elements; expected at least one output channel with at least one value")]
    Empty,
    #[error("weights must be finite, found {value} at flat index {index}")]
    NonFinite { index: usize, value: f32 },
    #[error("{format}: float weights have no codes")]
    Unquantized { format: String },
    #[error("input of shape {shape:?}: expected {expected}")]
    InputShape { shape: Vec<usize>, expected: String },
    #[error("GPTQ needs the second moment of {expected} input features; {features} were measured")]
    Hessian { features: usize, expected: usize },
    #[error("the damped second moment of the layer's input is not positive definite (non-finite inputs?)")]
    Indefinite,
    #[error("{format}: GPTQ rounding needs the second moment of the layer's input, measured on calibration items")]
    NoHessian { format: String },
    #[error("the singular value decomposition of the weight did not converge (non-finite values?)")]
    Svd,
    #[error("activation range [{min}, {max}] is empty or not finite; observe calibration data first")]
    Range { min: f32, max: f32 },
}
