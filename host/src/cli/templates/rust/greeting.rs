//! A kefu greeting plugin. Build: cargo build --release --target wasm32-wasip2
wit_bindgen::generate!({ world: "greeting", path: "wit" });

struct Plugin;

impl Guest for Plugin {
    fn greet(request: GreetingRequest) -> Result<GreetingReply, String> {
        let name = &request.customer.nickname;
        Ok(GreetingReply {
            reply: format!("{name}您好，欢迎光临！请问有什么可以为您服务 :)"),
            quick_replies: vec!["查询物流".into(), "退换货".into()],
            hand_off: false,
            matched_keywords: vec![],
            off_hours: false,
        })
    }
}

export!(Plugin);
