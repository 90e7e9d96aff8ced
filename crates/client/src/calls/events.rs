//! The coordination event stream.

use ifc_api::CoordinationEvent;

use crate::{Client, ItemStream};

impl Client {
    /// Every coordination event after revision `after` (`None`: from now) (admin).
    pub fn events(&self, after: Option<i64>) -> ItemStream<CoordinationEvent> {
        self.event_stream("/v1/events".into(), "event", after, |e: &CoordinationEvent| e.revision)
    }
}
