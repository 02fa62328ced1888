//! The server's memory allocator: mimalloc for everything but large blocks, which are mapped from
//! the system on their own and unmapped when freed.
//!
//! Why: a large request's tensors and answer (64 rows x 256 tokens x 384 floats is 25 MB, and
//! the answer passes through about three such buffers) are freed on other threads than the ones
//! that allocated them. mimalloc then only marks the memory reusable and leaves it resident until
//! the allocating thread next allocates or collects, which an idle server's threads never do: the
//! RSS stayed about 70 MiB above its level before the request. An unmapped block is gone at once,
//! whichever thread frees it. Small blocks, the whole of an ordinary request, stay mimalloc's.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr;

/// Blocks of this size or more are mapped on their own. Far above any ordinary request's buffer,
/// and at the size from which mapping, and the page faults of fresh pages, cost little beside
/// filling the block.
pub const LARGE_BYTES: usize = 1 << 20;

/// mimalloc, with large blocks mapped from the system (see the module's documentation).
pub struct ServerAllocator;

/// A page: mappings are aligned to it, so a larger alignment goes to mimalloc.
const PAGE_ALIGN: usize = 4096;

#[inline]
fn is_large(size: usize, align: usize) -> bool {
    size >= LARGE_BYTES && align <= PAGE_ALIGN
}

// SAFETY: every block is freed (or resized) by the allocator that made it: the choice depends only
// on the block's size and alignment, which the caller hands back unchanged (a resize that crosses
// LARGE_BYTES moves the block from one to the other).
#[allow(unsafe_code)] // An allocator is unsafe by contract: see each SAFETY comment.
unsafe impl GlobalAlloc for ServerAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_large(layout.size(), layout.align()) {
            // SAFETY: the caller's layout is passed on as given.
            return unsafe { mimalloc::MiMalloc.alloc(layout) };
        }
        // SAFETY: an anonymous private mapping of a nonzero length, at an address of the
        // kernel's choice: no existing memory is touched. It is zeroed and page-aligned.
        let mapped = unsafe {
            libc::mmap(
                ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            mapped.cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            // SAFETY: as alloc; a fresh mapping is zeroed by the kernel.
            return unsafe { self.alloc(layout) };
        }
        // SAFETY: the caller's layout is passed on as given.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            // SAFETY: a large block is a mapping of exactly layout.size() bytes made by alloc or
            // realloc, which the caller no longer uses.
            unsafe { libc::munmap(block.cast(), layout.size()) };
        } else {
            // SAFETY: a small block is mimalloc's, with this layout.
            unsafe { mimalloc::MiMalloc.dealloc(block, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (is_large(layout.size(), align), is_large(new_size, align)) {
            // SAFETY: mimalloc's block, resized by mimalloc.
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(block, layout, new_size) },
            (true, true) => {
                // SAFETY: the block is a mapping of layout.size() bytes; the kernel moves or
                // grows it in place, keeping its contents, and unmaps the old range.
                let moved = unsafe {
                    libc::mremap(block.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE)
                };
                if moved == libc::MAP_FAILED {
                    ptr::null_mut()
                } else {
                    moved.cast()
                }
            }
            _ => {
                // From one allocator to the other: a new block, the contents copied, the old freed.
                let Ok(new_layout) = Layout::from_size_align(new_size, align) else {
                    return ptr::null_mut();
                };
                // SAFETY: a valid layout of a nonzero size (the caller's contract for realloc).
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size, and do not overlap.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)] // Calling the allocator directly, as the standard library does.
    fn blocks_keep_their_contents_across_every_resize() {
        let allocator = ServerAllocator;
        let sizes = [
            64,
            LARGE_BYTES - 1,
            LARGE_BYTES,
            3 * LARGE_BYTES + 5,
            100,
            2 * LARGE_BYTES,
        ];
        let mut layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: the layout is nonzero; each resize hands back the block and layout it got.
        unsafe {
            let mut block = allocator.alloc_zeroed(layout);
            assert!(!block.is_null());
            assert_eq!(std::slice::from_raw_parts(block, 16), [0; 16]);
            for (index, size) in sizes.into_iter().enumerate() {
                let kept = layout.size().min(size);
                ptr::write_bytes(block, index as u8, kept);
                block = allocator.realloc(block, layout, size);
                assert!(!block.is_null());
                let contents = std::slice::from_raw_parts(block, kept);
                assert!(
                    contents.iter().all(|&byte| byte == index as u8),
                    "size {size}"
                );
                layout = Layout::from_size_align(size, 8).unwrap();
                ptr::write_bytes(block, 0xAB, size);
            }
            allocator.dealloc(block, layout);
            let large = Layout::from_size_align(LARGE_BYTES, 64).unwrap();
            let zeroed = allocator.alloc_zeroed(large);
            assert!(std::slice::from_raw_parts(zeroed, LARGE_BYTES)
                .iter()
                .all(|&b| b == 0));
            allocator.dealloc(zeroed, large);
        }
    }
}
