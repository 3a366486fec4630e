//! A bump arena in front of the system allocator, for instances that live
//! for one call.
//!
//! kefu gives every call a fresh instance by default, so a plugin's heap is
//! thrown away after one call and a general-purpose allocator's
//! bookkeeping is wasted work. Lowering a request alone calls the guest's
//! allocator once per string and list. The arena hands out memory by
//! moving a pointer. It takes back the last block handed out, and starts
//! over when every block has been freed (a reused instance between calls).
//! What does not fit goes to the system allocator (dlmalloc on
//! wasm32-wasip2), so a plugin that needs more memory, or an instance
//! that keeps a block forever, only falls back to the usual path: the
//! arena never grows and never leaks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// An `N`-byte bump arena; allocations that do not fit go to [`System`].
/// Not thread-safe: install it only where there is one thread (see
/// `lib.rs`).
pub struct Arena<const N: usize> {
    state: UnsafeCell<State<N>>,
}

#[repr(C, align(16))]
struct State<const N: usize> {
    bytes: [u8; N],
    /// Offset of the first free byte.
    top: usize,
    /// Blocks handed out and not yet freed.
    live: usize,
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena {
            state: UnsafeCell::new(State {
                bytes: [0; N],
                top: 0,
                live: 0,
            }),
        }
    }

    /// The arena's offset of `ptr`, when the arena handed it out.
    fn offset(&self, ptr: *mut u8) -> Option<usize> {
        // SAFETY: only the address of the bytes is taken.
        let base = unsafe { (*self.state.get()).bytes.as_ptr() } as usize;
        let addr = ptr as usize;
        (addr >= base && addr < base + N).then(|| addr - base)
    }

    /// Blocks of the arena in use (for tests).
    pub fn live(&self) -> usize {
        // SAFETY: single-threaded by contract; a plain read.
        unsafe { (*self.state.get()).live }
    }
}

// SAFETY: wasm32 without the atomics feature runs one thread, so the
// state is never touched from two at once.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<const N: usize> Sync for Arena<N> {}

// SAFETY: every method keeps `top <= N` and hands out disjoint ranges of
// `bytes` aligned as asked; blocks it did not hand out go to `System`.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded by contract: no other reference to the
        // state is alive while this one is.
        let s = unsafe { &mut *self.state.get() };
        let base = s.bytes.as_mut_ptr() as usize;
        let start = (base + s.top).next_multiple_of(layout.align()) - base;
        match start.checked_add(layout.size()) {
            Some(end) if end <= N => {
                s.top = end;
                s.live += 1;
                // SAFETY: `start..end` is inside `bytes`.
                unsafe { s.bytes.as_mut_ptr().add(start) }
            }
            // SAFETY: the caller's layout contract carries over.
            _ => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(offset) = self.offset(ptr) else {
            // SAFETY: not ours, so `System` handed it out.
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: as in `alloc`.
        let s = unsafe { &mut *self.state.get() };
        s.live -= 1;
        if s.live == 0 {
            s.top = 0;
        } else if offset + layout.size() == s.top {
            s.top = offset;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = self.offset(ptr) else {
            // SAFETY: not ours, so `System` handed it out.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        // SAFETY: as in `alloc`.
        let s = unsafe { &mut *self.state.get() };
        let last = offset + layout.size() == s.top;
        if last && offset + new_size <= N {
            // The newest block grows or shrinks where it is.
            s.top = offset + new_size;
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `new_size` is non-zero and, rounded to the alignment,
        // does not overflow (the caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for any `alloc`; the old block stays valid until the
        // copy is done, and then it is freed with its own layout.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused_when_all_are_freed() {
        let arena = Box::new(Arena::<256>::new());
        unsafe {
            let a = arena.alloc(layout(3, 1));
            let b = arena.alloc(layout(8, 8));
            assert_eq!(b as usize % 8, 0);
            assert!(b as usize >= a as usize + 3);
            assert_eq!(arena.offset(a), Some(0));
            assert_eq!(arena.live(), 2);
            arena.dealloc(a, layout(3, 1));
            arena.dealloc(b, layout(8, 8));
            assert_eq!(arena.live(), 0);
            // Everything was freed: the next block starts over.
            assert_eq!(arena.alloc(layout(16, 1)), a);
        }
    }

    #[test]
    fn the_newest_block_grows_in_place_and_is_taken_back_when_freed() {
        let arena = Box::new(Arena::<256>::new());
        unsafe {
            let keep = arena.alloc(layout(4, 4));
            let grow = arena.alloc(layout(10, 1));
            grow.write_bytes(7, 10);
            assert_eq!(arena.realloc(grow, layout(10, 1), 100), grow);
            assert_eq!(*grow.add(9), 7);
            arena.dealloc(grow, layout(100, 1));
            // The freed newest block's room is handed out again.
            assert_eq!(arena.alloc(layout(1, 1)), grow);
            assert_eq!(arena.live(), 2);
            arena.dealloc(keep, layout(4, 4));
        }
    }

    #[test]
    fn what_does_not_fit_goes_to_the_system_allocator_and_back() {
        let arena = Box::new(Arena::<64>::new());
        unsafe {
            let first = arena.alloc(layout(40, 1));
            first.write_bytes(1, 40);
            let big = arena.alloc(layout(1000, 8));
            assert_eq!(arena.offset(big), None);
            big.write_bytes(9, 1000);
            // An older block that must grow past the arena moves out,
            // contents and all.
            let second = arena.alloc(layout(8, 1));
            let moved = arena.realloc(first, layout(40, 1), 500);
            assert_eq!(arena.offset(moved), None);
            assert_eq!(*moved.add(39), 1);
            assert_eq!(arena.live(), 1);
            let big = arena.realloc(big, layout(1000, 8), 2000);
            assert_eq!(*big.add(999), 9);
            arena.dealloc(big, layout(2000, 8));
            arena.dealloc(moved, layout(500, 1));
            arena.dealloc(second, layout(8, 1));
            assert_eq!(arena.live(), 0);
        }
    }
}
