//! Reading what a torch.distributed.checkpoint (DCP) `.metadata` file says the checkpoint holds.
//!
//! DCP's `FileSystemWriter.finish` pickles a `Metadata` whose `storage_data` maps every saved item
//! to a `_StorageInfo(relative_path, offset, length)` (`torch/distributed/checkpoint/filesystem.py`),
//! then renames `.metadata.tmp` to `.metadata`. A directory is complete when every file named there
//! exists and is at least as long as the furthest `offset + length` recorded for it.
//!
//! The file is never unpickled: another user may have written it, and unpickling runs code. A small
//! stack machine here understands the opcodes `pickle.dump` emits for these dataclasses (protocols
//! 2 to 5), builds inert values, and never calls anything. Memory is bounded by the file's size,
//! which is capped.

use std::collections::HashMap;

/// The largest `.metadata` read (a model with millions of tensors stays far below it).
pub const MAX_METADATA_BYTES: u64 = 256 * 1024 * 1024;

/// Why the metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// The pickle stops before its end (a cut-off write): the checkpoint is not complete.
    Truncated,
    /// The pickle is inconsistent (a stack underflow, a bad reference): not what DCP writes.
    Malformed(&'static str),
    /// An opcode this reader does not know (a future pickle protocol): the contents cannot be
    /// checked, which says nothing about whether the checkpoint is complete.
    Unsupported(u8),
}

#[derive(Debug, Clone)]
enum Node {
    None,
    Bool,
    Int(i64),
    BigInt,
    Float,
    Str(String),
    Bytes,
    Tuple,
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Set,
    Global(String),
    Object { class: usize, state: Option<usize> },
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u64, usize>,
}

type Step<T> = Result<T, MetadataError>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(MetadataError::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(MetadataError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Step<u64> {
        let bytes = self.take(n)?;
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(buf))
    }

    fn len(&mut self, n: usize) -> Step<usize> {
        let len = self.uint(n)?;
        usize::try_from(len).map_err(|_| MetadataError::Truncated)
    }

    fn push(&mut self, node: Node) {
        self.nodes.push(node);
        self.stack.push(self.nodes.len() - 1);
    }

    fn pop(&mut self) -> Step<usize> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(MetadataError::Malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or(MetadataError::Malformed("stack underflow"))
    }

    fn top(&self) -> Step<usize> {
        self.stack
            .last()
            .copied()
            .ok_or(MetadataError::Malformed("empty stack"))
    }

    fn pop_mark(&mut self) -> Step<Vec<usize>> {
        let mark = self.marks.pop().ok_or(MetadataError::Malformed("no mark"))?;
        if mark > self.stack.len() {
            return Err(MetadataError::Malformed("mark beyond the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn text(&mut self, n: usize) -> Step<()> {
        let len = self.len(n)?;
        let bytes = self.take(len)?;
        self.push(Node::Str(String::from_utf8_lossy(bytes).into_owned()));
        Ok(())
    }

    fn skip_bytes(&mut self, n: usize) -> Step<()> {
        let len = self.len(n)?;
        self.take(len)?;
        self.push(Node::Bytes);
        Ok(())
    }

    fn line(&mut self) -> Step<String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(MetadataError::Truncated)?;
        self.pos += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn memo_put(&mut self, key: u64) -> Step<()> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Step<()> {
        let node = *self
            .memo
            .get(&key)
            .ok_or(MetadataError::Malformed("unknown memo key"))?;
        self.stack.push(node);
        Ok(())
    }

    fn tuple(&mut self, n: usize) -> Step<()> {
        for _ in 0..n {
            self.pop()?;
        }
        self.push(Node::Tuple);
        Ok(())
    }

    fn extend_list(&mut self, list: usize, items: Vec<usize>) -> Step<()> {
        match &mut self.nodes[list] {
            Node::List(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(MetadataError::Malformed("append to a non-list")),
        }
    }

    fn set_items(&mut self, dict: usize, items: &[usize]) -> Step<()> {
        if items.len() % 2 != 0 {
            return Err(MetadataError::Malformed("odd number of dict items"));
        }
        match &mut self.nodes[dict] {
            Node::Dict(v) => {
                v.extend(items.chunks(2).map(|p| (p[0], p[1])));
                Ok(())
            }
            _ => Err(MetadataError::Malformed("setitem on a non-dict")),
        }
    }

    fn signed(bytes: &[u8]) -> Node {
        if bytes.is_empty() {
            return Node::Int(0);
        }
        if bytes.len() > 8 {
            return Node::BigInt;
        }
        let fill = if bytes[bytes.len() - 1] & 0x80 != 0 {
            0xff
        } else {
            0
        };
        let mut buf = [fill; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        Node::Int(i64::from_le_bytes(buf))
    }

    /// Runs to STOP; the nodes are then what the pickle built.
    fn run(&mut self) -> Step<()> {
        loop {
            let op = self.take(1)?[0];
            if op == b'.' {
                return Ok(());
            }
            if !(self.data_op(op)? || self.memo_op(op)? || self.container_op(op)? || self.object_op(op)?) {
                return Err(MetadataError::Unsupported(op));
            }
        }
    }

    /// Framing, scalars, strings and bytes; false when `op` is not one of them.
    fn data_op(&mut self, op: u8) -> Step<bool> {
        match op {
            0x80 => {
                self.take(1)?;
            }
            0x95 => {
                self.take(8)?;
            }
            0x8c => self.text(1)?,
            b'X' => self.text(4)?,
            0x8d => self.text(8)?,
            b'C' => self.skip_bytes(1)?,
            b'B' => self.skip_bytes(4)?,
            0x8e | 0x96 => self.skip_bytes(8)?,
            b'N' => self.push(Node::None),
            0x88 | 0x89 => self.push(Node::Bool),
            b'J' => {
                let bytes = self.take(4)?;
                self.push(Self::signed(bytes));
            }
            b'K' => {
                let v = self.take(1)?[0];
                self.push(Node::Int(i64::from(v)));
            }
            b'M' => {
                let bytes = self.take(2)?;
                self.push(Node::Int(i64::from(u16::from_le_bytes([bytes[0], bytes[1]]))));
            }
            0x8a => {
                let len = self.len(1)?;
                let bytes = self.take(len)?;
                self.push(Self::signed(bytes));
            }
            0x8b => {
                let len = self.len(4)?;
                let bytes = self.take(len)?;
                self.push(Self::signed(bytes));
            }
            b'G' => {
                self.take(8)?;
                self.push(Node::Float);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The memo and the stack's own operations; false when `op` is not one of them.
    fn memo_op(&mut self, op: u8) -> Step<bool> {
        match op {
            0x94 => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            b'q' => {
                let key = self.uint(1)?;
                self.memo_put(key)?;
            }
            b'r' => {
                let key = self.uint(4)?;
                self.memo_put(key)?;
            }
            b'h' => {
                let key = self.uint(1)?;
                self.memo_get(key)?;
            }
            b'j' => {
                let key = self.uint(4)?;
                self.memo_get(key)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?;
                self.stack.push(top);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Tuples, lists, dicts and sets; false when `op` is not one of them.
    fn container_op(&mut self, op: u8) -> Step<bool> {
        match op {
            b')' => self.push(Node::Tuple),
            0x85 => self.tuple(1)?,
            0x86 => self.tuple(2)?,
            0x87 => self.tuple(3)?,
            b't' => {
                self.pop_mark()?;
                self.push(Node::Tuple);
            }
            b']' => self.push(Node::List(Vec::new())),
            b'l' => {
                let items = self.pop_mark()?;
                self.push(Node::List(items));
            }
            b'a' => {
                let item = self.pop()?;
                let list = self.top()?;
                self.extend_list(list, vec![item])?;
            }
            b'e' => {
                let items = self.pop_mark()?;
                let list = self.top()?;
                self.extend_list(list, items)?;
            }
            b'}' => self.push(Node::Dict(Vec::new())),
            b'd' => {
                let items = self.pop_mark()?;
                self.push(Node::Dict(Vec::new()));
                let dict = self.top()?;
                self.set_items(dict, &items)?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                let dict = self.top()?;
                self.set_items(dict, &[key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                let dict = self.top()?;
                self.set_items(dict, &items)?;
            }
            0x8f => self.push(Node::Set),
            0x90 => {
                self.pop_mark()?;
                self.top()?;
            }
            0x91 => {
                self.pop_mark()?;
                self.push(Node::Set);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Globals and objects (built inert, never called); false when `op` is not one of them.
    fn object_op(&mut self, op: u8) -> Step<bool> {
        match op {
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let text = |n: usize| match &self.nodes[n] {
                    Node::Str(s) => s.clone(),
                    _ => String::new(),
                };
                let qualified = format!("{}.{}", text(module), text(name));
                self.push(Node::Global(qualified));
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Node::Global(format!("{module}.{name}")));
            }
            // NEWOBJ (cls, args) and REDUCE (callable, args): an object of that class.
            0x81 | b'R' => {
                let _args = self.pop()?;
                let class = self.pop()?;
                self.push(Node::Object { class, state: None });
            }
            0x92 => {
                let _kwargs = self.pop()?;
                let _args = self.pop()?;
                let class = self.pop()?;
                self.push(Node::Object { class, state: None });
            }
            b'b' => {
                let state = self.pop()?;
                let object = self.top()?;
                match &mut self.nodes[object] {
                    Node::Object { state: slot, .. } => *slot = Some(state),
                    _ => return Err(MetadataError::Malformed("build of a non-object")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn field(&self, state: usize, key: &str) -> Option<usize> {
        let Node::Dict(items) = &self.nodes[state] else {
            return None;
        };
        items
            .iter()
            .find(|(k, _)| matches!(&self.nodes[*k], Node::Str(s) if s == key))
            .map(|(_, v)| *v)
    }

    fn int_field(&self, state: usize, key: &str) -> Option<u64> {
        match self.field(state, key).map(|n| &self.nodes[n]) {
            Some(Node::Int(v)) => u64::try_from(*v).ok(),
            _ => None,
        }
    }
}

/// Every file the metadata names, with the least size each must have (the furthest
/// `offset + length` recorded in it), sorted by name.
pub fn storage_files(data: &[u8]) -> Result<Vec<(String, u64)>, MetadataError> {
    let mut machine = Machine {
        data,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    machine.run()?;
    let mut files: HashMap<String, u64> = HashMap::new();
    let mut saw_metadata = false;
    for node in &machine.nodes {
        let Node::Object { class, state } = node else {
            continue;
        };
        let Node::Global(class) = &machine.nodes[*class] else {
            continue;
        };
        if class.ends_with(".Metadata") {
            saw_metadata = true;
        }
        if !class.ends_with("._StorageInfo") {
            continue;
        }
        let state = state.ok_or(MetadataError::Malformed("_StorageInfo without state"))?;
        let path = match machine.field(state, "relative_path").map(|n| &machine.nodes[n]) {
            Some(Node::Str(s)) => s.clone(),
            _ => return Err(MetadataError::Malformed("_StorageInfo without relative_path")),
        };
        let offset = machine.int_field(state, "offset");
        let length = machine.int_field(state, "length");
        let (Some(offset), Some(length)) = (offset, length) else {
            return Err(MetadataError::Malformed("_StorageInfo without offset or length"));
        };
        let end = offset.saturating_add(length);
        let slot = files.entry(path).or_insert(0);
        *slot = (*slot).max(end);
    }
    if !saw_metadata {
        return Err(MetadataError::Malformed("no Metadata object"));
    }
    let mut files: Vec<(String, u64)> = files.into_iter().collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pickle shaped like DCP's (protocol 4): `Metadata` with `storage_data` {index: `_StorageInfo`}.
    #[allow(clippy::cast_possible_truncation)] // short test strings
    fn metadata(entries: &[(&str, u8, u8)], cut: usize) -> Vec<u8> {
        let mut p = vec![0x80, 4];
        let s = |p: &mut Vec<u8>, t: &str| {
            p.push(0x8c);
            p.push(t.len() as u8);
            p.extend_from_slice(t.as_bytes());
        };
        s(&mut p, "torch.distributed.checkpoint.metadata");
        s(&mut p, "Metadata");
        p.extend_from_slice(&[0x93, 0x94, b')', 0x81, b'}', b'(']);
        s(&mut p, "storage_data");
        p.extend_from_slice(b"}(");
        for (i, (path, offset, length)) in entries.iter().enumerate() {
            s(&mut p, &format!("key{i}"));
            s(&mut p, "torch.distributed.checkpoint.filesystem");
            s(&mut p, "_StorageInfo");
            p.extend_from_slice(&[0x93, b')', 0x81, b'}', b'(']);
            s(&mut p, "relative_path");
            s(&mut p, path);
            s(&mut p, "offset");
            p.extend_from_slice(&[b'K', *offset]);
            s(&mut p, "length");
            p.extend_from_slice(&[b'K', *length]);
            p.extend_from_slice(b"ub");
        }
        p.extend_from_slice(b"uub.");
        p.truncate(p.len() - cut);
        p
    }

    #[test]
    fn reads_files_and_their_furthest_end() {
        let data = metadata(
            &[
                ("__0_0.distcp", 0, 10),
                ("__0_0.distcp", 10, 5),
                ("__1_0.distcp", 0, 7),
            ],
            0,
        );
        assert_eq!(
            storage_files(&data),
            Ok(vec![
                ("__0_0.distcp".to_owned(), 15),
                ("__1_0.distcp".to_owned(), 7)
            ])
        );
    }

    #[test]
    fn a_cut_pickle_is_truncated_and_garbage_is_refused() {
        let data = metadata(&[("__0_0.distcp", 0, 10)], 3);
        assert_eq!(storage_files(&data), Err(MetadataError::Truncated));
        assert_eq!(storage_files(b""), Err(MetadataError::Truncated));
        assert!(matches!(storage_files(b"a."), Err(MetadataError::Malformed(_))));
        assert_eq!(
            storage_files(b"\x80\x04\xff"),
            Err(MetadataError::Unsupported(0xff))
        );
        assert!(matches!(storage_files(b"N."), Err(MetadataError::Malformed(_))));
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)] // a pseudo-random generator's bits
    fn random_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let base = metadata(&[("__0_0.distcp", 0, 10), ("__1_0.distcp", 3, 4)], 0);
        for round in 0..4000 {
            let mut data = base.clone();
            for _ in 0..=(round % 7) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % data.len();
                data[at] = (seed >> 32) as u8;
            }
            let _ = storage_files(&data);
            let cut = (seed as usize) % data.len();
            let _ = storage_files(&data[..cut]);
        }
    }
}
