//! WASI preview1: stdio to the log, clocks, randomness, environment.

use wasmtime::Linker;

use super::memory::{read, write, write_u32};
use super::{C, R};
use crate::abi::{errno, LogLevel};
use crate::state::HostState;

pub(super) fn define(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const W: &str = "wasi_snapshot_preview1";
    fn e(r: Result<(), i32>) -> i32 {
        match r {
            Ok(()) => errno::SUCCESS,
            Err(_) => errno::FAULT,
        }
    }
    l.func_wrap(
        W,
        "fd_write",
        |mut c: C<'_>, fd: i32, iovs: i32, n: i32, written: i32| -> R {
            if fd != 1 && fd != 2 {
                return Ok(errno::BADF);
            }
            let mut data = Vec::new();
            for i in 0..n.max(0) {
                let Ok(iov) = read(&mut c, iovs.wrapping_add(i.wrapping_mul(8)), 8) else {
                    return Ok(errno::FAULT);
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                match read(&mut c, ptr, len) {
                    Ok(b) => data.extend_from_slice(&b),
                    Err(_) => return Ok(errno::FAULT),
                }
            }
            if write_u32(&mut c, written, data.len() as u32).is_err() {
                return Ok(errno::FAULT);
            }
            // Envoy logs a module's stdout at info and stderr at error, per line.
            let s = c.data_mut();
            let idx = (fd - 1) as usize;
            s.stdio_partial[idx].extend_from_slice(&data);
            while let Some(pos) = s.stdio_partial[idx].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = s.stdio_partial[idx].drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                let level = if fd == 1 {
                    LogLevel::Info
                } else {
                    LogLevel::Error
                };
                s.log(level, text);
            }
            Ok(errno::SUCCESS)
        },
    )?;
    l.func_wrap(
        W,
        "fd_read",
        |_c: C<'_>, _: i32, _: i32, _: i32, _: i32| -> R { Ok(errno::BADF) },
    )?;
    l.func_wrap(W, "fd_close", |_c: C<'_>, _fd: i32| -> R {
        Ok(errno::BADF)
    })?;
    l.func_wrap(
        W,
        "fd_seek",
        |_c: C<'_>, _fd: i32, _off: i64, _wh: i32, _ret: i32| -> R { Ok(errno::BADF) },
    )?;
    // No preopened directories: std::fs finds nothing, as in Envoy.
    l.func_wrap(W, "fd_prestat_get", |_c: C<'_>, _fd: i32, _p: i32| -> R {
        Ok(errno::BADF)
    })?;
    l.func_wrap(
        W,
        "fd_prestat_dir_name",
        |_c: C<'_>, _fd: i32, _p: i32, _l: i32| -> R { Ok(errno::BADF) },
    )?;
    l.func_wrap(W, "fd_fdstat_get", |mut c: C<'_>, fd: i32, ret: i32| -> R {
        if !(0..=2).contains(&fd) {
            return Ok(errno::BADF);
        }
        // filetype CHARACTER_DEVICE (2), no flags, no rights restrictions.
        let mut stat = [0u8; 24];
        stat[0] = 2;
        stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        stat[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        Ok(e(write(&mut c, ret, &stat)))
    })?;
    l.func_wrap(W, "random_get", |mut c: C<'_>, ptr: i32, len: i32| -> R {
        // Bound the request before allocating: the length comes from the module.
        if len as u32 > 1 << 20 {
            return Ok(errno::INVAL);
        }
        let mut buf = vec![0u8; len as u32 as usize];
        if getrandom::fill(&mut buf).is_err() {
            return Ok(errno::NOSYS);
        }
        Ok(e(write(&mut c, ptr, &buf)))
    })?;
    l.func_wrap(
        W,
        "clock_time_get",
        |mut c: C<'_>, id: i32, _precision: i64, ret: i32| -> R {
            let s = c.data();
            let t = match id {
                0 => s.realtime_ns(),
                1..=3 => s.now_ns,
                _ => return Ok(errno::INVAL),
            };
            Ok(e(write(&mut c, ret, &t.to_le_bytes())))
        },
    )?;
    l.func_wrap(W, "clock_res_get", |mut c: C<'_>, id: i32, ret: i32| -> R {
        if !(0..=3).contains(&id) {
            return Ok(errno::INVAL);
        }
        Ok(e(write(&mut c, ret, &1u64.to_le_bytes())))
    })?;
    l.func_wrap(
        W,
        "environ_sizes_get",
        |mut c: C<'_>, count_ptr: i32, size_ptr: i32| -> R {
            let env = c.data().config.env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            Ok(e(write_u32(&mut c, count_ptr, env.len() as u32)
                .and_then(|_| write_u32(&mut c, size_ptr, size as u32))))
        },
    )?;
    l.func_wrap(W, "environ_get", |mut c: C<'_>, ptrs: i32, buf: i32| -> R {
        let env = c.data().config.env.clone();
        let mut off = 0i32;
        for (i, (k, v)) in env.iter().enumerate() {
            let entry = format!("{k}={v}\0");
            let r = write_u32(
                &mut c,
                ptrs.wrapping_add(4 * i as i32),
                buf.wrapping_add(off) as u32,
            )
            .and_then(|_| write(&mut c, buf.wrapping_add(off), entry.as_bytes()));
            if r.is_err() {
                return Ok(errno::FAULT);
            }
            off = off.wrapping_add(entry.len() as i32);
        }
        Ok(errno::SUCCESS)
    })?;
    l.func_wrap(
        W,
        "args_sizes_get",
        |mut c: C<'_>, count_ptr: i32, size_ptr: i32| -> R {
            Ok(e(
                write_u32(&mut c, count_ptr, 0).and_then(|_| write_u32(&mut c, size_ptr, 0))
            ))
        },
    )?;
    l.func_wrap(W, "args_get", |_c: C<'_>, _a: i32, _b: i32| -> R {
        Ok(errno::SUCCESS)
    })?;
    l.func_wrap(W, "sched_yield", |_c: C<'_>| -> R { Ok(errno::SUCCESS) })?;
    l.func_wrap(
        W,
        "proc_exit",
        |_c: C<'_>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::format_err!("module called proc_exit({code})"))
        },
    )?;
    Ok(())
}
