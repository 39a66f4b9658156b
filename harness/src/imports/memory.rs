//! Guest memory access. A module's bad pointer answers
//! INVALID_MEMORY_ACCESS, never traps the host.

use wasmtime::Extern;

use super::C;
use crate::abi::status;

fn memory(c: &mut C<'_>) -> Option<wasmtime::Memory> {
    match c.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

pub(super) fn read(c: &mut C<'_>, ptr: i32, len: i32) -> Result<Vec<u8>, i32> {
    let mem = memory(c).ok_or(status::INVALID_MEMORY_ACCESS)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let end = ptr.checked_add(len).ok_or(status::INVALID_MEMORY_ACCESS)?;
    mem.data(&*c)
        .get(ptr..end)
        .map(<[u8]>::to_vec)
        .ok_or(status::INVALID_MEMORY_ACCESS)
}

pub(super) fn read_str(c: &mut C<'_>, ptr: i32, len: i32) -> Result<String, i32> {
    Ok(String::from_utf8_lossy(&read(c, ptr, len)?).into_owned())
}

pub(super) fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    let mem = memory(c).ok_or(status::INVALID_MEMORY_ACCESS)?;
    let ptr = ptr as u32 as usize;
    let end = ptr
        .checked_add(bytes.len())
        .ok_or(status::INVALID_MEMORY_ACCESS)?;
    mem.data_mut(&mut *c)
        .get_mut(ptr..end)
        .ok_or(status::INVALID_MEMORY_ACCESS)?
        .copy_from_slice(bytes);
    Ok(())
}

pub(super) fn write_u32(c: &mut C<'_>, ptr: i32, v: u32) -> Result<(), i32> {
    write(c, ptr, &v.to_le_bytes())
}

/// Copies `data` into memory the module allocates and stores the pointer and
/// length at `ptr_ptr` / `len_ptr`. An allocator trap is the module's fault
/// and propagates as a trap.
pub(super) fn copy_out(
    c: &mut C<'_>,
    data: &[u8],
    ptr_ptr: i32,
    len_ptr: i32,
) -> wasmtime::Result<i32> {
    // Check the out-pointers first so a bad pointer does not leak an allocation.
    if let Err(s) = write_u32(c, ptr_ptr, 0).and_then(|_| write_u32(c, len_ptr, 0)) {
        return Ok(s);
    }
    if data.is_empty() {
        return Ok(status::OK);
    }
    crate::hostcalls::allocated(c.data_mut());
    let alloc = c.data().allocator;
    let Some(Extern::Func(f)) = c.get_export(alloc) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let f = f.typed::<i32, i32>(&*c)?;
    let addr = f.call(&mut *c, data.len() as i32)?;
    if addr == 0 {
        return Ok(status::INTERNAL_FAILURE);
    }
    if let Err(s) = write(c, addr, data) {
        return Ok(s);
    }
    match write_u32(c, ptr_ptr, addr as u32).and_then(|_| write_u32(c, len_ptr, data.len() as u32))
    {
        Ok(()) => Ok(status::OK),
        Err(s) => Ok(s),
    }
}
