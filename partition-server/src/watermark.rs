//! The high watermark as readers see it: an offset published by the append
//! path once data below it is durable, read by fetches without taking the
//! log's lock.
//!
//! Two properties matter and the loom test checks both under every
//! interleaving: the published value never goes backwards, even when
//! group-commit leaders on different threads publish out of order; and a
//! reader that sees offset `h` also sees every byte the writers stored
//! before publishing `h` (Release on publish, Acquire on read).

/// The atomic the watermark is built on: std's in production, loom's in the
/// model-checking test, so the test runs this very code.
pub trait AtomicOffset {
    fn new(value: i64) -> Self;
    fn fetch_max_release(&self, value: i64) -> i64;
    fn load_acquire(&self) -> i64;
}

impl AtomicOffset for std::sync::atomic::AtomicI64 {
    fn new(value: i64) -> Self {
        std::sync::atomic::AtomicI64::new(value)
    }
    fn fetch_max_release(&self, value: i64) -> i64 {
        self.fetch_max(value, std::sync::atomic::Ordering::Release)
    }
    fn load_acquire(&self) -> i64 {
        self.load(std::sync::atomic::Ordering::Acquire)
    }
}

pub struct Watermark<A: AtomicOffset = std::sync::atomic::AtomicI64> {
    value: A,
}

impl<A: AtomicOffset> Watermark<A> {
    pub fn new(initial: i64) -> Self {
        Watermark { value: A::new(initial) }
    }

    /// Publishes `offset` if it is above the current value. Returns whether
    /// the watermark moved.
    pub fn advance(&self, offset: i64) -> bool {
        self.value.fetch_max_release(offset) < offset
    }

    pub fn get(&self) -> i64 {
        self.value.load_acquire()
    }
}

#[cfg(test)]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    impl AtomicOffset for loom::sync::atomic::AtomicI64 {
        fn new(value: i64) -> Self {
            loom::sync::atomic::AtomicI64::new(value)
        }
        fn fetch_max_release(&self, value: i64) -> i64 {
            self.fetch_max(value, loom::sync::atomic::Ordering::Release)
        }
        fn load_acquire(&self) -> i64 {
            self.load(loom::sync::atomic::Ordering::Acquire)
        }
    }

    const SLOTS: usize = 2;

    /// A stand-in log: slots written by appenders (serialised by the log
    /// lock, as in the partition), read by fetchers below the watermark.
    struct Model {
        log_lock: Mutex<usize>,
        slots: [UnsafeCell<u64>; SLOTS],
        watermark: Watermark<loom::sync::atomic::AtomicI64>,
    }

    unsafe impl Sync for Model {}

    #[test]
    fn readers_see_all_data_below_the_watermark_and_it_never_moves_back() {
        // Proves Release/Acquire publication and monotonicity under every interleaving.
        loom::model(|| {
            let model = Arc::new(Model {
                log_lock: Mutex::new(0),
                slots: [UnsafeCell::new(0), UnsafeCell::new(0)],
                watermark: Watermark::new(0),
            });
            let appenders: Vec<_> = (0..SLOTS)
                .map(|_| {
                    let m = model.clone();
                    thread::spawn(move || {
                        let end = {
                            let mut next = m.log_lock.lock().unwrap();
                            let slot = *next;
                            m.slots[slot].with_mut(|p| unsafe { *p = 100 + slot as u64 });
                            *next += 1;
                            *next
                        };
                        // Published after the lock is gone, as a group-commit leader does.
                        m.watermark.advance(end as i64);
                    })
                })
                .collect();
            let reader = {
                let m = model.clone();
                thread::spawn(move || {
                    let first = m.watermark.get();
                    for slot in 0..first as usize {
                        let v = m.slots[slot].with(|p| unsafe { *p });
                        assert_eq!(v, 100 + slot as u64, "slot below watermark not visible");
                    }
                    let second = m.watermark.get();
                    assert!(second >= first, "watermark went back from {first} to {second}");
                })
            };
            for a in appenders {
                a.join().unwrap();
            }
            reader.join().unwrap();
            assert_eq!(model.watermark.get(), SLOTS as i64);
        });
    }
}
