//! Documents: the sans-IO state machine ([`core`]), the actor that drives it ([`actor`]), and the
//! supervisor that is also the node's registry of open documents ([`supervisor`]).

pub mod actor;
pub mod core;
pub mod supervisor;
pub mod text;

pub use self::core::{ConnId, CoreSettings, DocumentCore, Output, StoreJob};
pub use self::text::DocumentText;
