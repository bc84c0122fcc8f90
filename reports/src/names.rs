//! Layer names short enough for a figure's axis: long names keep their start and end around
//! an ellipsis (the end usually tells the layer apart), the same way everywhere in a report.

/// Characters a layer label may take.
pub const LABEL_CHARS: usize = 28;

/// `name` cut to `LABEL_CHARS` characters: the first third, `…`, and the rest from the end.
pub fn shorten(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= LABEL_CHARS {
        return name.to_string();
    }
    let head = LABEL_CHARS / 3;
    let tail = LABEL_CHARS - head - 1;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_stay_and_long_ones_keep_both_ends() {
        assert_eq!(shorten("node_conv2d_195"), "node_conv2d_195");
        let long = "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k";
        let short = shorten(long);
        assert_eq!(short.chars().count(), LABEL_CHARS);
        assert!(short.starts_with("down_blo") && short.ends_with("attn2.to_k"), "{short}");
        assert_eq!(shorten(long), short, "the same name always gets the same label");
    }
}
