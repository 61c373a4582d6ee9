//! The ONE opcode table: byte, enum variant and name, written once by a macro so decoding and
//! names cannot drift (candle's pickle reader wrote its table twice and they disagreed).
//! These are exactly the opcodes the release's files use (docs/formats/grok-checkpoint.md
//! "Pickle subset"), plus GLOBAL
//! and the memo/length variants a conforming protocol-2..4 writer may choose instead.

macro_rules! opcodes {
    ($($byte:literal => $name:ident),* $(,)?) => {
        /// An allowed pickle opcode.
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Op { $($name),* }

        /// (byte, opcode, name) for every allowed opcode.
        pub const OPCODES: &[(u8, Op, &str)] = &[$(($byte, Op::$name, stringify!($name))),*];

        impl Op {
            /// Decode a byte; `None` for anything outside the allow-list.
            pub fn from_byte(b: u8) -> Option<Op> {
                match b { $($byte => Some(Op::$name),)* _ => None }
            }
            /// The opcode's name as in CPython's pickletools.
            pub fn name(self) -> &'static str {
                match self { $(Op::$name => stringify!($name)),* }
            }
            /// The opcode's byte.
            pub fn byte(self) -> u8 {
                match self { $(Op::$name => $byte),* }
            }
        }
    };
}

opcodes! {
    0x80 => PROTO,
    0x95 => FRAME,
    0x2e => STOP,
    0x28 => MARK,
    0x29 => EMPTY_TUPLE,
    0x74 => TUPLE,
    0x85 => TUPLE1,
    0x86 => TUPLE2,
    0x87 => TUPLE3,
    0x7d => EMPTY_DICT,
    0x73 => SETITEM,
    0x75 => SETITEMS,
    0x4a => BININT,
    0x4b => BININT1,
    0x4d => BININT2,
    0x4e => NONE,
    0x88 => NEWTRUE,
    0x89 => NEWFALSE,
    0x8c => SHORT_BINUNICODE,
    0x58 => BINUNICODE,
    0x43 => SHORT_BINBYTES,
    0x42 => BINBYTES,
    0x8e => BINBYTES8,
    0x94 => MEMOIZE,
    0x68 => BINGET,
    0x6a => LONG_BINGET,
    0x71 => BINPUT,
    0x72 => LONG_BINPUT,
    0x93 => STACK_GLOBAL,
    0x63 => GLOBAL,
    0x52 => REDUCE,
    0x81 => NEWOBJ,
    0x62 => BUILD,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn table_is_consistent() {
        assert_eq!(OPCODES.len(), 33);
        for &(b, op, name) in OPCODES {
            assert_eq!(Op::from_byte(b), Some(op));
            assert_eq!(op.byte(), b);
            assert_eq!(op.name(), name);
        }
        let mut bytes: Vec<u8> = OPCODES.iter().map(|r| r.0).collect();
        bytes.sort();
        bytes.dedup();
        assert_eq!(bytes.len(), OPCODES.len());
    }
}
