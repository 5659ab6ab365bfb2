// Frozen-weight storage: f32, one element per array entry (also every operand that is
// not a frozen weight). A template that includes a weights snippet binds the weight as
// `wq: array<WQ>` (element reads) and/or `wq4: array<WQ4>` (reads of four consecutive
// elements) and reads it only through wload / wload4, so one template serves every
// storage dtype.
alias WQ = f32;
alias WQ4 = vec4<f32>;

// Element i.
fn wload(i: u32) -> f32 {
    return wq[i];
}

// Elements 4·i4 .. 4·i4 + 3.
fn wload4(i4: u32) -> vec4<f32> {
    return wq4[i4];
}
