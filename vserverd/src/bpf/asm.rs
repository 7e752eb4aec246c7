//! A small typed eBPF assembler: the few instructions the socket programs need, forward
//! labels, and the kernel's 8-byte encoding. Programs are built per guest with its addresses
//! as immediates, so no compiler, no object file and no maps are involved (systemd builds its
//! IP firewall the same way).
//!
//! Encoding (the kernel's `struct bpf_insn`): opcode byte, destination register in the low
//! nibble and source register in the high nibble of the second byte, a signed 16-bit offset,
//! a signed 32-bit immediate; all little-endian on the machines we run on.

/// A register. R0 return value, R1-R5 arguments (clobbered by calls), R6-R9 kept across calls,
/// R10 the read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
pub const R10: Reg = Reg(10);

/// One encoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst in bits 0-3, src in bits 4-7.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src.0 << 4) | (dst.0 & 0xf),
            off,
            imm,
        }
    }

    pub fn bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

// Instruction classes, sizes, modes and operations (uapi linux/bpf_common.h, linux/bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const DW: u8 = 0x18;
const H: u8 = 0x08;
const B: u8 = 0x10;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const K: u8 = 0x00;
const X: u8 = 0x08;
const ATOMIC: u8 = 0xc0;
const MOV: u8 = 0xb0;
const ADD: u8 = 0x00;
const AND: u8 = 0x50;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;

/// A jump target, placed once with [`Asm::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    #[error("label {0} used but never placed")]
    Unplaced(usize),
    #[error("label {0} placed twice")]
    Twice(usize),
    #[error("jump from {from} to {to} does not fit a 16-bit offset")]
    TooFar { from: usize, to: usize },
}

/// The program being built.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (index of a jump instruction, its target).
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    fn push(&mut self, i: Insn) -> &mut Self {
        self.insns.push(i);
        self
    }

    /// A fresh, unplaced label.
    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn label(&mut self, l: Label) -> Result<&mut Self, AsmError> {
        let slot = &mut self.labels[l.0];
        if slot.is_some() {
            return Err(AsmError::Twice(l.0));
        }
        *slot = Some(self.insns.len());
        Ok(self)
    }

    /// Whether a jump to `l` was emitted (code behind an unused label is unreachable, which
    /// the verifier refuses).
    pub fn used(&self, l: Label) -> bool {
        self.fixups.iter().any(|(_, t)| *t == l)
    }

    /// dst = src (64-bit).
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(Insn::new(ALU64 | MOV | X, dst, src, 0, 0))
    }

    /// dst = imm, sign-extended to 64 bits.
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(ALU64 | MOV | K, dst, Reg(0), 0, imm))
    }

    /// dst += imm (64-bit, imm sign-extended).
    pub fn add_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(ALU64 | ADD | K, dst, Reg(0), 0, imm))
    }

    /// dst &= imm (64-bit, imm sign-extended).
    pub fn and_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(Insn::new(ALU64 | AND | K, dst, Reg(0), 0, imm))
    }

    /// dst = a 64-bit constant (two instruction slots).
    pub fn ld_imm64(&mut self, dst: Reg, v: u64) -> &mut Self {
        self.push(Insn::new(LD | DW | IMM, dst, Reg(0), 0, v as u32 as i32));
        self.push(Insn::new(0, Reg(0), Reg(0), 0, (v >> 32) as u32 as i32))
    }

    /// dst = the map with file descriptor `fd` (BPF_PSEUDO_MAP_FD: the kernel swaps in the
    /// map at load, and the program keeps the map alive from then on).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) -> &mut Self {
        self.push(Insn::new(LD | DW | IMM, dst, Reg(1), 0, fd));
        self.push(Insn::new(0, Reg(0), Reg(0), 0, 0))
    }

    /// dst = *(u64 *)(src + off).
    pub fn ldx_dw(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(LDX | MEM | DW, dst, src, off, 0))
    }

    /// *(u64 *)(dst + off) = src.
    pub fn stx_dw(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Insn::new(STX | MEM | DW, dst, src, off, 0))
    }

    /// *(u64 *)(dst + off) += src, atomically (BPF_ATOMIC with BPF_ADD: a counter that
    /// process and softirq context both bump).
    pub fn xadd_dw(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Insn::new(STX | ATOMIC | DW, dst, src, off, ADD as i32))
    }

    /// dst = *(u8 *)(src + off), zero-extended.
    pub fn ldx_b(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(LDX | MEM | B, dst, src, off, 0))
    }

    /// dst = *(u16 *)(src + off), zero-extended.
    pub fn ldx_h(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(LDX | MEM | H, dst, src, off, 0))
    }

    /// dst = *(u32 *)(src + off), zero-extended.
    pub fn ldx_w(&mut self, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Insn::new(LDX | MEM | W, dst, src, off, 0))
    }

    /// *(u32 *)(dst + off) = src.
    pub fn stx_w(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Insn::new(STX | MEM | W, dst, src, off, 0))
    }

    /// *(u32 *)(dst + off) = imm. (The verifier refuses immediate stores into the context:
    /// use [`Asm::stx_w`] there; this is for the stack.)
    pub fn st_w(&mut self, dst: Reg, off: i16, imm: u32) -> &mut Self {
        self.push(Insn::new(ST | MEM | W, dst, Reg(0), off, imm as i32))
    }

    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(Insn::new(code, dst, src, 0, imm))
    }

    /// goto `to`.
    pub fn ja(&mut self, to: Label) -> &mut Self {
        self.jump(JMP | JA, Reg(0), Reg(0), 0, to)
    }

    /// if (u32)dst == v goto `to` (a 32-bit compare: no sign extension of the immediate).
    pub fn jeq32(&mut self, dst: Reg, v: u32, to: Label) -> &mut Self {
        self.jump(JMP32 | JEQ | K, dst, Reg(0), v as i32, to)
    }

    /// if (u32)dst != v goto `to`.
    pub fn jne32(&mut self, dst: Reg, v: u32, to: Label) -> &mut Self {
        self.jump(JMP32 | JNE | K, dst, Reg(0), v as i32, to)
    }

    /// if dst == imm goto `to` (64-bit, imm sign-extended: 0 tests a pointer for NULL).
    pub fn jeq_imm(&mut self, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(JMP | JEQ | K, dst, Reg(0), imm, to)
    }

    /// if dst != imm goto `to` (64-bit, imm sign-extended).
    pub fn jne_imm(&mut self, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.jump(JMP | JNE | K, dst, Reg(0), imm, to)
    }

    /// if dst != src goto `to` (64-bit).
    pub fn jne_reg(&mut self, dst: Reg, src: Reg, to: Label) -> &mut Self {
        self.jump(JMP | JNE | X, dst, src, 0, to)
    }

    /// Calls helper number `id` (arguments in R1-R5, result in R0).
    pub fn call(&mut self, id: i32) -> &mut Self {
        self.push(Insn::new(JMP | CALL, Reg(0), Reg(0), 0, id))
    }

    pub fn exit(&mut self) -> &mut Self {
        self.push(Insn::new(JMP | EXIT, Reg(0), Reg(0), 0, 0))
    }

    /// The finished program, every jump resolved.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        for &(at, l) in &self.fixups {
            let to = self.labels[l.0].ok_or(AsmError::Unplaced(l.0))?;
            let off = to as i64 - (at as i64 + 1);
            self.insns[at].off =
                i16::try_from(off).map_err(|_| AsmError::TooFar { from: at, to })?;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_kernel_opcodes() {
        let mut a = Asm::new();
        a.mov(R6, R1)
            .mov_imm(R0, 1)
            .ldx_w(R2, R6, 4)
            .stx_w(R6, 4, R2)
            .st_w(R10, -16, 2)
            .and_imm(R2, 0xff)
            .call(122)
            .exit();
        let p = a.finish().unwrap();
        let b: Vec<[u8; 8]> = p.iter().map(Insn::bytes).collect();
        // Values as `bpftool prog dump xlated opcodes` prints them.
        assert_eq!(b[0], [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(b[1], [0xb7, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(b[2], [0x61, 0x62, 4, 0, 0, 0, 0, 0]);
        assert_eq!(b[3], [0x63, 0x26, 4, 0, 0, 0, 0, 0]);
        assert_eq!(b[4], [0x62, 0x0a, 0xf0, 0xff, 2, 0, 0, 0]);
        assert_eq!(b[5], [0x57, 0x02, 0, 0, 0xff, 0, 0, 0]);
        assert_eq!(b[6], [0x85, 0x00, 0, 0, 122, 0, 0, 0]);
        assert_eq!(b[7], [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn ld_imm64_takes_two_slots() {
        let mut a = Asm::new();
        a.ld_imm64(R2, 0x1122_3344_5566_7788);
        let p = a.finish().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].bytes(), [0x18, 0x02, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(p[1].bytes(), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn jumps_resolve_forward_and_compare_32_bits() {
        let mut a = Asm::new();
        let end = a.new_label();
        a.jeq32(R2, 0xc0a8_0001, end)
            .jne_reg(R0, R1, end)
            .ja(end)
            .mov_imm(R0, 0);
        a.label(end).unwrap();
        a.exit();
        let p = a.finish().unwrap();
        // JMP32|JEQ|K = 0x16, the immediate's bits kept (no sign extension at 32 bits).
        assert_eq!(p[0].bytes(), [0x16, 0x02, 3, 0, 0x01, 0x00, 0xa8, 0xc0]);
        assert_eq!(p[1].bytes(), [0x5d, 0x10, 2, 0, 0, 0, 0, 0]);
        assert_eq!(p[2].bytes(), [0x05, 0x00, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn map_references_and_wide_accesses() {
        let mut a = Asm::new();
        a.ld_map_fd(R1, 7)
            .ldx_dw(R2, R6, 184)
            .stx_dw(R10, -8, R0)
            .ldx_b(R3, R2, 2)
            .ldx_h(R3, R2, 0);
        let end = a.new_label();
        a.jeq_imm(R0, 0, end).jne_imm(R0, 0, end);
        a.label(end).unwrap();
        a.exit();
        let p = a.finish().unwrap();
        // src_reg 1 marks the immediate as a map's fd.
        assert_eq!(p[0].bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(p[1].bytes(), [0; 8]);
        assert_eq!(p[2].bytes(), [0x79, 0x62, 184, 0, 0, 0, 0, 0]);
        assert_eq!(p[3].bytes(), [0x7b, 0x0a, 0xf8, 0xff, 0, 0, 0, 0]);
        assert_eq!(p[4].bytes(), [0x71, 0x23, 2, 0, 0, 0, 0, 0]);
        assert_eq!(p[5].bytes(), [0x69, 0x23, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p[6].bytes(), [0x15, 0x00, 1, 0, 0, 0, 0, 0]);
        assert_eq!(p[7].bytes(), [0x55, 0x00, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn atomic_add() {
        let mut a = Asm::new();
        a.xadd_dw(R0, 8, R1);
        // BPF_STX|BPF_ATOMIC|BPF_DW, imm BPF_ADD (bpftool: "lock *(u64 *)(r0 +8) += r1").
        assert_eq!(
            a.finish().unwrap()[0].bytes(),
            [0xdb, 0x10, 8, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn label_errors() {
        let mut a = Asm::new();
        let l = a.new_label();
        a.ja(l);
        assert_eq!(a.finish().unwrap_err(), AsmError::Unplaced(0));
        let mut a = Asm::new();
        let l = a.new_label();
        a.label(l).unwrap();
        assert_eq!(a.label(l).unwrap_err(), AsmError::Twice(0));
    }
}
