//! The registry's side of one configuration for a cluster (`cluster.share_config`): it tells
//! whoever listens the pool file's text (as written back) whenever it may have changed, and
//! whether the change was made here; and it applies a text from the cluster by writing its own
//! pool file (so a restart without Redis comes back with it) and reloading from it.

use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, WrapFuture};

use super::actor::Registry;
use super::messages::{Reload, ReloadTrigger};
use crate::discovery::parse;

/// The cluster's pool file text, to apply here.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyShared(pub String);

impl Registry {
    /// Tells the listener the pool file's text now.
    pub(super) fn tell_pool_file(&self, changed_here: bool) {
        let Some(news) = &self.options.pool_file_news else {
            return;
        };
        let (pools, routes) = Self::file_content(&self.pools.load(), "", |_| {});
        (news.0)(crate::discovery::render(&pools, &routes), changed_here);
    }
}

impl Handler<ApplyShared> for Registry {
    type Result = ();

    /// A text that does not parse is refused (logged) and the file left as it is; else it
    /// replaces the file and a reload applies it.
    fn handle(&mut self, msg: ApplyShared, ctx: &mut Context<Self>) {
        let Some(file) = self.options.file.clone() else {
            return;
        };
        if let Err((key, problem)) = parse(&msg.0) {
            log::error!(
                "the cluster's configuration is not valid here, kept ours: {key}: {problem}"
            );
            return;
        }
        let shown = file.to_string();
        let text = msg.0;
        let write = async move {
            actix_rt::task::spawn_blocking(move || file.replace(&text))
                .await
                .map_err(|err| err.to_string())
                .and_then(|written| written.map_err(|err| err.to_string()))
        };
        ctx.wait(
            write
                .into_actor(self)
                .map(move |written, _, ctx| match written {
                    Ok(()) => ctx.address().do_send(Reload {
                        trigger: ReloadTrigger::Cluster,
                    }),
                    Err(err) => {
                        log::error!("cannot write the cluster's configuration to {shown}: {err}")
                    }
                }),
        );
    }
}
