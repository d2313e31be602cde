//! SMS notifications (docs/notifications.md): the outbox rows the group commit writes with
//! the events that cause them, and the dispatcher that sends them to the SMS gateway.
//!
//! Layout:
//! - [`templates`]: each message's text in Persian and English (pure).
//! - [`plan`]: which messages a batch's effects send (pure).
//! - [`gateway`]: the HTTP/1.1 client of the SMS gateway.
//! - [`dispatcher`]: the task that sends due outbox rows, with retries and backoff.

pub mod dispatcher;
pub mod gateway;
pub mod plan;
pub mod templates;
