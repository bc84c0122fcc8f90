//! One quantizable point of a denoiser graph and the role the graph gave it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a layer multiplies by a stored weight or multiplies two activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    /// Conv, ConvTranspose, Gemm or MatMul with a constant weight operand.
    Weight,
    /// MatMul or Einsum whose operands are both activations (attention QK^T and AV).
    ActMatMul,
}

/// What a layer does in the network, derived from the graph's wiring, never from names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A convolution on the image path that is none of the roles below.
    Conv,
    /// A matrix product on the image path that is none of the roles below.
    Linear,
    /// Time or condition embedding: its input depends on the timestep/sigma or on vector
    /// conditions, never on the noisy sample.
    Embedding,
    /// Query projection of self-attention (the sequence is the image itself).
    AttnQ,
    AttnK,
    AttnV,
    /// One projection producing queries, keys and values together (split afterwards).
    AttnQkv,
    AttnOut,
    /// Query projection of an attention whose keys come from the text-encoder output.
    CrossAttnQ,
    /// Key/value projections whose input is the text-encoder output.
    CrossAttnK,
    CrossAttnV,
    CrossAttnOut,
    /// First or second linear of a feed-forward block (linear → activation → linear).
    FeedForward,
    /// Activation × activation product feeding a softmax (QK^T).
    AttnScores,
    /// Activation × activation product consuming a softmax (AV).
    AttnValues,
    CrossAttnScores,
    CrossAttnValues,
    /// Any other activation × activation product.
    ActMatMul,
}

/// MixDQ's metric decoupling: content layers are scored by the final image's SSIM, quality
/// layers by the SQNR of the denoiser output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricGroup {
    Content,
    Quality,
}

impl Role {
    pub const ALL: [Role; 18] = [
        Role::Conv,
        Role::Linear,
        Role::Embedding,
        Role::AttnQ,
        Role::AttnK,
        Role::AttnV,
        Role::AttnQkv,
        Role::AttnOut,
        Role::CrossAttnQ,
        Role::CrossAttnK,
        Role::CrossAttnV,
        Role::CrossAttnOut,
        Role::FeedForward,
        Role::AttnScores,
        Role::AttnValues,
        Role::CrossAttnScores,
        Role::CrossAttnValues,
        Role::ActMatMul,
    ];

    /// The snake_case name used in tables, configs and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Conv => "conv",
            Role::Linear => "linear",
            Role::Embedding => "embedding",
            Role::AttnQ => "attn_q",
            Role::AttnK => "attn_k",
            Role::AttnV => "attn_v",
            Role::AttnQkv => "attn_qkv",
            Role::AttnOut => "attn_out",
            Role::CrossAttnQ => "cross_attn_q",
            Role::CrossAttnK => "cross_attn_k",
            Role::CrossAttnV => "cross_attn_v",
            Role::CrossAttnOut => "cross_attn_out",
            Role::FeedForward => "feed_forward",
            Role::AttnScores => "attn_scores",
            Role::AttnValues => "attn_values",
            Role::CrossAttnScores => "cross_attn_scores",
            Role::CrossAttnValues => "cross_attn_values",
            Role::ActMatMul => "act_matmul",
        }
    }

    /// Cross-attention and feed-forward layers move *what* is drawn (MixDQ's content group).
    pub fn metric_group(self) -> MetricGroup {
        match self {
            Role::CrossAttnQ
            | Role::CrossAttnK
            | Role::CrossAttnV
            | Role::CrossAttnOut
            | Role::CrossAttnScores
            | Role::CrossAttnValues
            | Role::FeedForward => MetricGroup::Content,
            _ => MetricGroup::Quality,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown role '{s}', expected one of: {}", names.join(", "))
        })
    }
}

impl fmt::Display for MetricGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricGroup::Content => "content",
            MetricGroup::Quality => "quality",
        })
    }
}

/// A quantizable point of the graph, with its cost at the model's input size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Unique name (the node name, or `{op}_{index}` where the graph left it empty).
    pub name: String,
    /// ONNX operator type: Conv, ConvTranspose, Gemm, MatMul or Einsum.
    pub op: String,
    pub kind: LayerKind,
    pub role: Role,
    /// Initializer holding the weight (weight layers only).
    pub weight: Option<String>,
    /// Shape of the weight (weight layers only).
    pub weight_shape: Vec<usize>,
    /// Axis of `weight` that indexes output channels (per-channel quantization runs along it).
    pub channel_axis: Option<usize>,
    /// Number of weight parameters (0 for activation products).
    pub params: u64,
    /// Multiply-accumulates of one forward at the shapes the model was measured with.
    pub macs: Option<u64>,
    /// Activation inputs of the node, in operand order.
    pub inputs: Vec<String>,
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip_and_groups_follow_mixdq() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("attention".parse::<Role>().is_err());
        assert_eq!(Role::CrossAttnK.metric_group(), MetricGroup::Content);
        assert_eq!(Role::FeedForward.metric_group(), MetricGroup::Content);
        assert_eq!(Role::AttnQkv.metric_group(), MetricGroup::Quality);
        assert_eq!(Role::Embedding.metric_group(), MetricGroup::Quality);
    }
}
