//! Shared data and shared queues, scoped by vm_id across all VMs of the node.

use wasmtime::Linker;

use super::memory::{copy_out, read, read_str, write_u32};
use super::{C, R};
use crate::abi::status;
use crate::state::HostState;

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, ptr_ptr: i32, len_ptr: i32, cas_ptr: i32| -> R {
            intercept!(c, "proxy_get_shared_data");
            let key = tri!(read_str(&mut c, kp, kl));
            let s = c.data();
            let Some((value, cas)) = s.node.shared_data(&s.config.vm_id, &key) else {
                return Ok(status::NOT_FOUND);
            };
            tri!(write_u32(&mut c, cas_ptr, cas));
            copy_out(&mut c, &value, ptr_ptr, len_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> R {
            intercept!(c, "proxy_set_shared_data");
            let key = tri!(read_str(&mut c, kp, kl));
            let value = tri!(read(&mut c, vp, vl));
            let s = c.data();
            Ok(s.node
                .set_shared_data(&s.config.vm_id, &key, &value, cas as u32))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, ret: i32| -> R {
            intercept!(c, "proxy_register_shared_queue");
            let name = tri!(read_str(&mut c, np, nl));
            let s = c.data();
            let id = s
                .node
                .register_queue(&s.config.vm_id, &name, s.vm_key, s.effective_context);
            tri!(write_u32(&mut c, ret, id));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> R {
            intercept!(c, "proxy_resolve_shared_queue");
            let vm_id = tri!(read_str(&mut c, vp, vl));
            let name = tri!(read_str(&mut c, np, nl));
            let Some(id) = c.data().node.resolve_queue(&vm_id, &name) else {
                return Ok(status::NOT_FOUND);
            };
            tri!(write_u32(&mut c, ret, id));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: i32, vp: i32, vl: i32| -> R {
            intercept!(c, "proxy_enqueue_shared_queue");
            let value = tri!(read(&mut c, vp, vl));
            Ok(match c.data().node.enqueue(id as u32, &value) {
                Ok(_) => status::OK,
                Err(s) => s,
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: i32, ptr_ptr: i32, len_ptr: i32| -> R {
            intercept!(c, "proxy_dequeue_shared_queue");
            let item = tri!(c.data().node.dequeue(id as u32));
            copy_out(&mut c, &item, ptr_ptr, len_ptr)
        },
    )?;
    Ok(())
}
