//! A component whose `decide` export has the wrong type.

wit_bindgen::generate!({ world: "wrong-signature", path: "wit" });

struct Plugin;

impl Guest for Plugin {
    fn decide(amount: u32) -> u32 {
        amount
    }
}

export!(Plugin);
