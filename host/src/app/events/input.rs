//! An event as senders write it (`POST /v1/shops/{shop}/events`): an
//! envelope with an id, a type, a time, a subject and the type's data,
//! checked and turned into the WIT `event` the flow gets.

use crate::bindings::flow::{ComplaintEvent, Event, EventData, OrderEvent, Subject};
use crate::bindings::types::{Complaint, Customer, GreetingRequest, Order, RefundRequest};
use crate::steps::{InputError, StepKind, Workflow, times};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Most events in one request.
pub const MAX_BATCH: usize = 500;
/// Longest event id, bytes.
pub const MAX_ID_BYTES: usize = 200;

/// The event types a sender may send, in the catalogue's order.
pub const TYPES: [&str; 10] = [
    "message.received",
    "order.created",
    "order.paid",
    "order.shipped",
    "order.delivered",
    "order.cancelled",
    "refund.requested",
    "refund.completed",
    "complaint.opened",
    "complaint.resolved",
];

/// The host's own types: never accepted from a sender.
pub const HOST_TYPES: [&str; 3] = ["timer.fired", "revisit.due", "step.completed"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    at: i64,
    #[serde(default)]
    subject: Option<SubjectIn>,
    data: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum SubjectIn {
    Order(String),
    Customer(String),
}

/// `order.*` data: the merge candidates and twin ids may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderIn {
    order: Order,
    customer: Customer,
    #[serde(default)]
    open_orders: Vec<Order>,
    #[serde(default)]
    similar_buyer_ids: Vec<String>,
}

/// `complaint.*` data: `resolved_at` defaults to the event's time.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComplaintIn {
    customer: Customer,
    complaint: ComplaintRef,
    #[serde(default)]
    order: Option<Order>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComplaintRef {
    id: String,
    cause: String,
    #[serde(default)]
    resolved_at: Option<i64>,
}

/// A checked event.
#[derive(Debug)]
pub struct Parsed {
    pub id: String,
    pub subject: String,
    pub event: Event,
}

/// `order:<id>` or `customer:<id>`.
pub fn subject_name(subject: &Subject) -> String {
    match subject {
        Subject::Order(id) => format!("order:{id}"),
        Subject::Customer(id) => format!("customer:{id}"),
    }
}

/// The subject `subject_name` made.
pub fn subject_of(name: &str) -> Option<Subject> {
    match name.split_once(':')? {
        ("order", id) => Some(Subject::Order(id.into())),
        ("customer", id) => Some(Subject::Customer(id.into())),
        _ => None,
    }
}

fn err(path: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parse `value` as `T`, naming the offending field under `data`.
fn data<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = crate::steps::field_path(&e.path().to_string(), &e.inner().to_string());
        let path = if path == "." {
            "data".into()
        } else {
            format!("data.{path}")
        };
        err(path, e.inner().to_string())
    })
}

/// An id or name: 1 to 200 bytes, no control characters.
fn check_id(path: &str, id: &str) -> Result<(), InputError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(err(
            path,
            format!("must be 1 to {MAX_ID_BYTES} bytes, not {}", id.len()),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(err(path, "must not contain control characters"));
    }
    Ok(())
}

/// Parse one event; the error names the field.
pub fn parse(value: serde_json::Value) -> Result<Parsed, InputError> {
    let envelope: Envelope = serde_path_to_error::deserialize(value)
        .map_err(|e| err(e.path().to_string(), e.inner().to_string()))?;
    check_id("id", &envelope.id)?;
    times::check("at", envelope.at)?;
    let kind = envelope.kind.as_str();
    if HOST_TYPES.contains(&kind) {
        return Err(err(
            "type",
            format!("`{kind}` is made by kefu itself and cannot be sent"),
        ));
    }
    let order = |o: OrderIn| OrderEvent {
        order: o.order,
        customer: o.customer,
        open_orders: o.open_orders,
        similar_buyer_ids: o.similar_buyer_ids,
    };
    let complaint = |c: ComplaintIn| ComplaintEvent {
        customer: c.customer,
        complaint: Complaint {
            id: c.complaint.id,
            cause: c.complaint.cause,
            resolved_at: c.complaint.resolved_at.unwrap_or(envelope.at),
        },
        order: c.order,
    };
    let payload = envelope.data;
    let event_data = match kind {
        "message.received" => EventData::MessageReceived(data::<GreetingRequest>(payload)?),
        "order.created" => EventData::OrderCreated(order(data(payload)?)),
        "order.paid" => EventData::OrderPaid(order(data(payload)?)),
        "order.shipped" => EventData::OrderShipped(order(data(payload)?)),
        "order.delivered" => EventData::OrderDelivered(order(data(payload)?)),
        "order.cancelled" => EventData::OrderCancelled(order(data(payload)?)),
        "refund.requested" => EventData::RefundRequested(data::<RefundRequest>(payload)?),
        "refund.completed" => EventData::RefundCompleted(order(data(payload)?)),
        "complaint.opened" => EventData::ComplaintOpened(complaint(data(payload)?)),
        "complaint.resolved" => EventData::ComplaintResolved(complaint(data(payload)?)),
        other => {
            return Err(err(
                "type",
                format!(
                    "unknown event type `{other}`: expected one of {}",
                    TYPES.join(", ")
                ),
            ));
        }
    };
    // The subject: as given, else the order the data is about, else its
    // buyer.
    let subject = match envelope.subject {
        Some(SubjectIn::Order(id)) => {
            check_id("subject.order", &id)?;
            Subject::Order(id)
        }
        Some(SubjectIn::Customer(id)) => {
            check_id("subject.customer", &id)?;
            Subject::Customer(id)
        }
        None => default_subject(&event_data),
    };
    let event = Event {
        id: envelope.id.clone(),
        at: envelope.at,
        subject,
        data: event_data,
    };
    let input = crate::bindings::flow::FlowInput { event, state: None };
    Workflow::check_input(&input).map_err(|e| {
        // The flow's input paths start at `event.data.<Variant>`; the
        // sender wrote `data`.
        let path = e
            .path
            .strip_prefix("event.data.")
            .and_then(|rest| rest.split_once('.'))
            .map(|(_, field)| format!("data.{field}"))
            .unwrap_or_else(|| e.path.replace("event.", ""));
        err(path, e.message)
    })?;
    Ok(Parsed {
        id: envelope.id,
        subject: subject_name(&input.event.subject),
        event: input.event,
    })
}

fn default_subject(data: &EventData) -> Subject {
    match data {
        EventData::MessageReceived(r) => Subject::Customer(r.customer.id.clone()),
        EventData::OrderCreated(e)
        | EventData::OrderPaid(e)
        | EventData::OrderShipped(e)
        | EventData::OrderDelivered(e)
        | EventData::OrderCancelled(e)
        | EventData::RefundCompleted(e) => Subject::Order(e.order.id.clone()),
        EventData::RefundRequested(r) => Subject::Order(r.order.id.clone()),
        EventData::ComplaintOpened(c) | EventData::ComplaintResolved(c) => match &c.order {
            Some(o) => Subject::Order(o.id.clone()),
            None => Subject::Customer(c.customer.id.clone()),
        },
        EventData::TimerFired(_) | EventData::RevisitDue(_) | EventData::StepCompleted(_) => {
            Subject::Customer(String::new())
        }
    }
}

/// `event` as a pending record of `shop`'s inbox, received at
/// `received_ms` (its `seq` is set when it joins the inbox).
pub fn record(
    shop: &str,
    event: &Event,
    received_ms: i64,
) -> Result<crate::storage::EventRecord, crate::storage::StorageError> {
    let json = serde_json::to_string(event)
        .map_err(|e| crate::storage::StorageError::Corrupt(e.to_string()))?;
    Ok(crate::storage::EventRecord::pending(
        shop,
        &event.id,
        kind_of(&event.data),
        &subject_name(&event.subject),
        event.at,
        received_ms,
        json,
    ))
}

/// The kind name of an event's data.
pub fn kind_of(data: &EventData) -> &'static str {
    match data {
        EventData::MessageReceived(_) => "message.received",
        EventData::OrderCreated(_) => "order.created",
        EventData::OrderPaid(_) => "order.paid",
        EventData::OrderShipped(_) => "order.shipped",
        EventData::OrderDelivered(_) => "order.delivered",
        EventData::OrderCancelled(_) => "order.cancelled",
        EventData::RefundRequested(_) => "refund.requested",
        EventData::RefundCompleted(_) => "refund.completed",
        EventData::ComplaintOpened(_) => "complaint.opened",
        EventData::ComplaintResolved(_) => "complaint.resolved",
        EventData::TimerFired(_) => "timer.fired",
        EventData::RevisitDue(_) => "revisit.due",
        EventData::StepCompleted(_) => "step.completed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> serde_json::Value {
        let req: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../examples/requests/order-confirmation/ok-with-remark.json"
        ))
        .unwrap();
        json!({"order": req["order"], "customer": req["customer"]})
    }

    #[test]
    fn an_order_event_defaults_its_subject_to_the_order() {
        let p =
            parse(json!({"id": "e1", "type": "order.paid", "at": 1_794_964_500, "data": order()}))
                .unwrap();
        assert_eq!(p.subject, "order:T20261118001");
        assert_eq!(kind_of(&p.event.data), "order.paid");
        assert!(matches!(p.event.data, EventData::OrderPaid(_)));
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut data = order();
        data["order"]["items"][0]["quantity"] = json!("two");
        let e = parse(json!({"id": "e1", "type": "order.paid", "at": 1_794_964_500, "data": data}))
            .unwrap_err();
        assert_eq!(e.path, "data.order.items[0].quantity", "{e}");

        let e =
            parse(json!({"id": "e1", "type": "order.teleported", "at": 1_794_964_500, "data": {}}))
                .unwrap_err();
        assert_eq!(e.path, "type");
        assert!(e.message.contains("order.paid"), "{e}");

        let e = parse(json!({"id": "e1", "type": "timer.fired", "at": 1_794_964_500, "data": {}}))
            .unwrap_err();
        assert!(e.message.contains("kefu itself"), "{e}");

        let e =
            parse(json!({"id": "", "type": "order.paid", "at": 1_794_964_500, "data": order()}))
                .unwrap_err();
        assert_eq!(e.path, "id");

        let e = parse(
            json!({"id": "e1", "type": "order.paid", "at": 1_794_964_500_000i64, "data": order()}),
        )
        .unwrap_err();
        assert_eq!(e.path, "at");

        let mut data = order();
        data["order"]["created_at"] = json!(5);
        let e = parse(json!({"id": "e1", "type": "order.paid", "at": 1_794_964_500, "data": data}))
            .unwrap_err();
        assert_eq!(e.path, "data.order.created_at", "{e}");
    }
}
