//! Typed handler registration (axum-style) and the erased dispatch table.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_types::{Action, FromChargingStation, FromCsms, Version};

use crate::peer::Peer;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler gets besides the request: who called, over which version,
/// a handle to call them back, and the router's state.
#[derive(Debug, Clone)]
pub struct Ctx<S> {
    /// The peer's identity (the station identity, on either side).
    pub identity: Arc<str>,
    /// The negotiated version.
    pub version: ProtocolVersion,
    /// A handle for calls to the peer on this connection.
    pub peer: Peer,
    /// The router's state.
    pub state: S,
}

/// Marker: the router runs on the CSMS (handles what stations send).
#[derive(Debug, Clone, Copy, Default)]
pub struct CsmsSide;

/// Marker: the router runs on a charging station (handles what the CSMS sends).
#[derive(Debug, Clone, Copy, Default)]
pub struct StationSide;

/// Which actions a side handles. Registering an action the other side sends
/// fails to compile.
#[diagnostic::on_unimplemented(
    message = "`{A}` is not sent to this side",
    label = "the peer never sends this action here",
    note = "a CSMS router handles actions a charging station sends (`FromChargingStation`), a station router the ones a CSMS sends (`FromCsms`)"
)]
pub trait Handles<A> {}
impl<A: FromChargingStation> Handles<A> for CsmsSide {}
impl<A: FromCsms> Handles<A> for StationSide {}

/// An async function handling one action:
/// `async fn(Ctx<S>, A::Request) -> Result<A::Response, CallError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a handler for `{A}`",
    note = "a handler is `async fn(Ctx<S>, <A as Action>::Request) -> Result<<A as Action>::Response, CallError>`"
)]
pub trait Handler<A: Action, S>: Clone + Send + Sync + 'static {
    /// Handles one call.
    fn call(&self, ctx: Ctx<S>, request: A::Request) -> BoxFuture<Result<A::Response, CallError>>;
}

impl<A, S, F, Fut> Handler<A, S> for F
where
    A: Action,
    F: Fn(Ctx<S>, A::Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<A::Response, CallError>> + Send + 'static,
{
    fn call(&self, ctx: Ctx<S>, request: A::Request) -> BoxFuture<Result<A::Response, CallError>> {
        Box::pin((self)(ctx, request))
    }
}

/// One registered handler with its types erased: JSON text in, JSON text out.
trait Erased<S>: Send + Sync {
    fn call(&self, ctx: Ctx<S>, payload: &str) -> BoxFuture<Result<String, CallError>>;
}

struct Typed<A, H> {
    handler: H,
    _a: PhantomData<fn() -> A>,
}

impl<A: Action, S: Send + 'static, H: Handler<A, S>> Erased<S> for Typed<A, H> {
    fn call(&self, ctx: Ctx<S>, payload: &str) -> BoxFuture<Result<String, CallError>> {
        let version = ctx.version;
        match evproto_ocpp_types::from_str::<A::Request>(payload) {
            Ok(req) => {
                let fut = self.handler.call(ctx, req);
                Box::pin(async move { fut.await.map(|res| evproto_ocpp_types::to_json(&res)) })
            }
            // The payload broke its schema: the version's code, decided in ocpp-types.
            Err(e) => Box::pin(std::future::ready(Err(CallError::for_decode_error(
                version, &e,
            )))),
        }
    }
}

/// Handlers for one version and one side, sharing state `S`.
///
/// ```
/// use evproto_ocpp_proto::CallError;
/// use evproto_ocpp_rpc::{Ctx, Router};
/// use evproto_ocpp_types::v201::{self, action::Heartbeat};
///
/// async fn heartbeat(_: Ctx<()>, _: v201::HeartbeatRequest) -> Result<v201::HeartbeatResponse, CallError> {
///     Ok(v201::HeartbeatResponse { current_time: chrono::Utc::now(), custom_data: None })
/// }
/// let router = Router::csms_v201().on::<Heartbeat>(heartbeat);
/// assert!(router.handles("Heartbeat"));
/// ```
///
/// Registering an action of another version, or one the peer never sends
/// here, does not compile:
///
/// ```compile_fail
/// # use evproto_ocpp_proto::CallError;
/// # use evproto_ocpp_rpc::{Ctx, Router};
/// # use evproto_ocpp_types::v16;
/// async fn reset(_: Ctx<()>, _: v16::ResetRequest) -> Result<v16::ResetResponse, CallError> { Err(CallError::internal()) }
/// // Reset is sent by the CSMS, so a CSMS router cannot handle it.
/// let router = Router::csms_v16().on::<v16::action::Reset>(reset);
/// ```
///
/// ```compile_fail
/// # use evproto_ocpp_proto::CallError;
/// # use evproto_ocpp_rpc::{Ctx, Router};
/// # use evproto_ocpp_types::v16;
/// async fn hb(_: Ctx<()>, _: v16::HeartbeatRequest) -> Result<v16::HeartbeatResponse, CallError> { Err(CallError::internal()) }
/// // a 1.6 action on a 2.0.1 router
/// let router = Router::csms_v201().on::<v16::action::Heartbeat>(hb);
/// ```
pub struct Router<V, Side, S = ()> {
    handlers: HashMap<&'static str, Arc<dyn Erased<S>>>,
    _marker: PhantomData<fn() -> (V, Side)>,
}

impl<V, Side, S> fmt::Debug for Router<V, Side, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("Router").field("actions", &names).finish()
    }
}

impl<V, Side, S> Clone for Router<V, Side, S> {
    fn clone(&self) -> Self {
        Self {
            handlers: self.handlers.clone(),
            _marker: PhantomData,
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Router<evproto_ocpp_types::V16, CsmsSide, S> {
    /// A CSMS router for OCPP 1.6.
    pub fn csms_v16() -> Self {
        Self::new()
    }
}
impl<S: Clone + Send + Sync + 'static> Router<evproto_ocpp_types::V201, CsmsSide, S> {
    /// A CSMS router for OCPP 2.0.1.
    pub fn csms_v201() -> Self {
        Self::new()
    }
}
impl<S: Clone + Send + Sync + 'static> Router<evproto_ocpp_types::V21, CsmsSide, S> {
    /// A CSMS router for OCPP 2.1.
    pub fn csms_v21() -> Self {
        Self::new()
    }
}
impl<S: Clone + Send + Sync + 'static> Router<evproto_ocpp_types::V16, StationSide, S> {
    /// A charging-station router for OCPP 1.6.
    pub fn station_v16() -> Self {
        Self::new()
    }
}
impl<S: Clone + Send + Sync + 'static> Router<evproto_ocpp_types::V201, StationSide, S> {
    /// A charging-station router for OCPP 2.0.1.
    pub fn station_v201() -> Self {
        Self::new()
    }
}
impl<S: Clone + Send + Sync + 'static> Router<evproto_ocpp_types::V21, StationSide, S> {
    /// A charging-station router for OCPP 2.1.
    pub fn station_v21() -> Self {
        Self::new()
    }
}

impl<V: Version, Side, S: Clone + Send + Sync + 'static> Router<V, Side, S> {
    /// An empty router.
    pub fn new() -> Self {
        Self {
            handlers: HashMap::new(),
            _marker: PhantomData,
        }
    }

    /// Registers `handler` for action `A`.
    ///
    /// # Panics
    ///
    /// If `A` already has a handler: a programming error, caught at start-up.
    ///
    /// ```should_panic
    /// # use evproto_ocpp_proto::CallError;
    /// # use evproto_ocpp_rpc::{Ctx, Router};
    /// # use evproto_ocpp_types::v16::{self, action::Heartbeat};
    /// async fn hb(_: Ctx<()>, _: v16::HeartbeatRequest) -> Result<v16::HeartbeatResponse, CallError> {
    ///     Err(CallError::internal())
    /// }
    /// let router = Router::csms_v16().on::<Heartbeat>(hb).on::<Heartbeat>(hb); // panics
    /// ```
    #[must_use]
    pub fn on<A>(mut self, handler: impl Handler<A, S>) -> Self
    where
        A: Action<Version = V>,
        Side: Handles<A>,
    {
        let erased: Arc<dyn Erased<S>> = Arc::new(Typed::<A, _> {
            handler,
            _a: PhantomData,
        });
        if self.handlers.insert(A::NAME, erased).is_some() {
            panic!("duplicate handler for OCPP action `{}`", A::NAME);
        }
        self
    }

    /// Whether an action has a handler.
    pub fn handles(&self, action: &str) -> bool {
        self.handlers.contains_key(action)
    }

    /// Binds the state, giving the table a connection can serve.
    pub fn with_state(self, state: S) -> Routes {
        let handlers = self.handlers;
        Routes {
            version: version_of::<V>(),
            dispatch: Arc::new(move |action: &str, ctx: Ctx<()>, payload: &str| {
                let ctx = Ctx {
                    identity: ctx.identity,
                    version: ctx.version,
                    peer: ctx.peer,
                    state: state.clone(),
                };
                handlers.get(action).map(|h| h.call(ctx, payload))
            }),
        }
    }
}

impl<V: Version, Side> Router<V, Side, ()> {
    /// The table of a router without state.
    pub fn into_routes(self) -> Routes {
        self.with_state(())
    }
}

impl<V: Version, Side, S: Clone + Send + Sync + 'static> Default for Router<V, Side, S> {
    fn default() -> Self {
        Self::new()
    }
}

fn version_of<V: Version>() -> ProtocolVersion {
    match V::SUBPROTOCOL {
        "ocpp1.6" => ProtocolVersion::V16,
        "ocpp2.0.1" => ProtocolVersion::V201,
        _ => ProtocolVersion::V21,
    }
}

type Dispatch =
    dyn Fn(&str, Ctx<()>, &str) -> Option<BoxFuture<Result<String, CallError>>> + Send + Sync;

/// A router with its state bound: what a connection dispatches incoming calls to.
#[derive(Clone)]
pub struct Routes {
    version: ProtocolVersion,
    dispatch: Arc<Dispatch>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Routes {
    /// The version the router was built for.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Runs the handler for `action`. A known action without a handler gets
    /// `NotImplemented`, as the generated per-version traits' defaults do:
    /// to this receiver the action is not implemented (OCPP-J 1.6 §4.2.3,
    /// 2.0.1 Part 4 §4.3). Unknown actions never get here (the endpoint
    /// answers them `NotImplemented` itself).
    pub fn dispatch(
        &self,
        action: &str,
        ctx: Ctx<()>,
        payload: &str,
    ) -> BoxFuture<Result<String, CallError>> {
        match (self.dispatch)(action, ctx, payload) {
            Some(fut) => fut,
            None => Box::pin(std::future::ready(Err(CallError::new(
                "NotImplemented",
                format!("`{action}` is not implemented"),
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Csms201;
    use evproto_ocpp_types::v201;

    fn ctx() -> Ctx<()> {
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        Ctx {
            identity: Arc::from("CP1"),
            version: ProtocolVersion::V201,
            peer: Peer {
                identity: Arc::from("CP1"),
                version: ProtocolVersion::V201,
                tx,
            },
            state: (),
        }
    }

    fn block<T>(f: BoxFuture<T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    struct MyCsms;

    impl Csms201 for MyCsms {
        async fn heartbeat(
            &self,
            _: Ctx<()>,
            _: v201::HeartbeatRequest,
        ) -> Result<v201::HeartbeatResponse, CallError> {
            Ok(v201::HeartbeatResponse {
                custom_data: None,
                current_time: chrono::DateTime::UNIX_EPOCH,
            })
        }
    }

    #[test]
    fn trait_overrides_answer_and_defaults_are_not_implemented() {
        let routes = MyCsms.into_routes();
        assert_eq!(
            block(routes.dispatch("Heartbeat", ctx(), "{}")).unwrap(),
            r#"{"currentTime":"1970-01-01T00:00:00Z"}"#
        );
        let err = block(routes.dispatch(
            "Authorize",
            ctx(),
            r#"{"idToken":{"idToken":"A","type":"ISO14443"}}"#,
        ))
        .unwrap_err();
        assert_eq!(err.code, "NotImplemented");
        // the payload is still validated first, with the version's code
        let err = block(routes.dispatch("Heartbeat", ctx(), r#"{"x":1}"#)).unwrap_err();
        assert_eq!(err.code, "ProtocolError");
    }

    #[test]
    fn router_dispatch_validates_then_calls() {
        let routes = Router::csms_v201()
            .on::<v201::action::Heartbeat>(|ctx: Ctx<u32>, _: v201::HeartbeatRequest| async move {
                assert_eq!(ctx.state, 7);
                Ok(v201::HeartbeatResponse {
                    custom_data: None,
                    current_time: chrono::DateTime::UNIX_EPOCH,
                })
            })
            .with_state(7);
        assert!(block(routes.dispatch("Heartbeat", ctx(), "{}")).is_ok());
        let err = block(routes.dispatch("Heartbeat", ctx(), "{")).unwrap_err();
        assert_eq!(err.code, "FormatViolation");
        let err = block(routes.dispatch("StatusNotification", ctx(), "{}")).unwrap_err();
        assert_eq!(err.code, "NotImplemented");
    }
}
