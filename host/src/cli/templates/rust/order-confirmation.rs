//! A kefu order-confirmation plugin. Build: cargo build --release --target wasm32-wasip2
wit_bindgen::generate!({ world: "order-confirmation", path: "wit" });

use kefu::workflow::types::{ConfirmationVerdict, IssueKind, OrderIssue};

struct Plugin;

impl Guest for Plugin {
    fn confirm(request: ConfirmationRequest) -> Result<Confirmation, String> {
        let phone = &request.order.address.phone;
        let verdict = if phone.len() == 11 && phone.starts_with('1') {
            ConfirmationVerdict::Ok
        } else {
            ConfirmationVerdict::NeedsFix(vec![OrderIssue {
                kind: IssueKind::InvalidPhone,
                field: "order.address.phone".into(),
                detail: "not an 11-digit mobile number".into(),
            }])
        };
        Ok(Confirmation { verdict, message: "亲，订单信息已核对 :)".into(), remark: None, merge_with: vec![] })
    }
}

export!(Plugin);
