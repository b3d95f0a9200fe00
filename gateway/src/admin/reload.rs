//! Reloading targets.conf on SIGHUP with the smallest change: targets added to the file are
//! started, targets removed from it are stopped once idle, and for the others only what
//! changed is applied (ACLs, iSCSI keys, LUNs added, removed, replaced or re-described).
//!
//! The new file is checked whole before anything is applied: a parse error, a store that
//! cannot be opened or a bad iSCSI key leaves the running daemon exactly as it was. Targets
//! created with tgtadm (not from the file) are left alone.

use std::collections::BTreeMap;

use super::service::{PendingAdmin, PendingKind, NO_CONN};
use crate::backing::Backing;
use crate::config::{Config, LunConf, TargetConf};
use crate::daemon;
use crate::iscsi::chap::Accounts;
use crate::iscsi::params::TargetLimits;
use crate::mgmt::{LunRecord, Mgmt};
use crate::msg::TargetMsg;

/// What a reload will do to one configured target that stays.
#[derive(Debug)]
struct TargetChange {
    tid: u32,
    addresses: Vec<String>,
    names: Vec<String>,
    limits: TargetLimits,
    accounts: Accounts,
    nop: crate::target::liveness::Nop,
    remove_luns: Vec<u64>,
    add_luns: Vec<LunRecord>,
    update_luns: Vec<LunRecord>,
}

/// Everything a reload will do, decided (and every store opened) before any of it is done.
#[derive(Debug, Default)]
struct Plan {
    start: Vec<(TargetConf, daemon::LunStores, TargetLimits)>,
    stop: Vec<u32>,
    change: Vec<TargetChange>,
}

/// A LUN's store must be reopened (its LUN replaced) when any of these differ.
fn store_differs(a: &LunConf, b: &LunConf) -> bool {
    a.path != b.path
        || a.settings.bs_type != b.settings.bs_type
        || a.settings.block_size != b.settings.block_size
        || a.settings.null_size_bytes != b.settings.null_size_bytes
        || a.settings.bs_opts != b.settings.bs_opts
        || a.settings.write_cache != b.settings.write_cache
}

impl Mgmt {
    /// Re-reads the configuration file and applies the difference.
    pub(crate) fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            tracing::info!("SIGHUP: gatewayd runs without --config; nothing to reload");
            return;
        };
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload: {e}; nothing was changed");
                return;
            }
        };
        match self.plan(&config) {
            Ok(plan) => {
                self.apply(plan);
                self.discovery_accounts = config.discovery_accounts;
                self.list_config_accounts();
            }
            Err(e) => tracing::error!(file = %path.display(), "reload: {e}; nothing was changed"),
        }
    }

    fn plan(&self, config: &Config) -> Result<Plan, String> {
        let mut plan = Plan::default();
        for t in &config.targets {
            let limits = daemon::target_limits(t).map_err(|e| e.to_string())?;
            let Some(entry) = self
                .targets
                .iter()
                .find(|e| e.name.eq_ignore_ascii_case(&t.name))
            else {
                let stores = t
                    .luns
                    .iter()
                    .map(|l| {
                        Backing::open(l)
                            .map(|b| (l.lun, b, l.settings.block_size))
                            .map_err(|e| format!("target {} LUN {}: {e}", t.name, l.lun))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                plan.start.push((t.clone(), stores, limits));
                continue;
            };
            if !entry.from_config {
                return Err(format!(
                    "target {} was created with tgtadm; delete it there before the file names it",
                    t.name
                ));
            }
            let mut change = TargetChange {
                tid: entry.tid,
                addresses: daemon::acl_addresses(t),
                names: t.initiator_names.clone(),
                limits,
                accounts: t.accounts.clone(),
                nop: t.nop(self.timeouts.nop),
                remove_luns: Vec::new(),
                add_luns: Vec::new(),
                update_luns: Vec::new(),
            };
            let wanted: BTreeMap<u64, &LunConf> = t.luns.iter().map(|l| (l.lun, l)).collect();
            for (&lun, record) in &entry.luns {
                match wanted.get(&lun) {
                    None => change.remove_luns.push(lun),
                    Some(conf) if store_differs(&record.conf, conf) => {
                        change.remove_luns.push(lun);
                    }
                    Some(_) => {}
                }
            }
            for (&lun, &conf) in &wanted {
                let old = entry
                    .luns
                    .get(&lun)
                    .filter(|r| !store_differs(&r.conf, conf));
                match old {
                    None => {
                        let backing = Backing::open(conf)
                            .map_err(|e| format!("target {} LUN {lun}: {e}", t.name))?;
                        let lu = daemon::lu_config(&t.name, conf, &backing);
                        change
                            .add_luns
                            .push(LunRecord::new(conf.clone(), lu, backing));
                    }
                    Some(record) if record.conf != *conf => {
                        let mut lu = daemon::lu_config_sized(
                            &t.name,
                            conf,
                            record.size_bytes,
                            record.lu.write_cache,
                        );
                        lu.blocks = record.lu.blocks;
                        let backing = if !conf.settings.readonly && !record.opened_rw {
                            Some(
                                Backing::open(conf)
                                    .map_err(|e| format!("target {} LUN {lun}: {e}", t.name))?,
                            )
                        } else {
                            None
                        };
                        change.update_luns.push(LunRecord {
                            conf: conf.clone(),
                            lu,
                            size_bytes: record.size_bytes,
                            opened_rw: record.opened_rw || backing.is_some(),
                            online: record.online,
                            backing,
                        });
                    }
                    Some(_) => {}
                }
            }
            plan.change.push(change);
        }
        for entry in &self.targets {
            let kept = config
                .targets
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(&entry.name));
            if entry.from_config && !kept {
                plan.stop.push(entry.tid);
            }
        }
        Ok(plan)
    }

    fn apply(&mut self, plan: Plan) {
        let (started, stopped, changed) = (plan.start.len(), plan.stop.len(), plan.change.len());
        for tid in plan.stop {
            let Some(entry) = self.targets.iter_mut().find(|t| t.tid == tid) else {
                continue;
            };
            // New logins are refused from now on; the thread stops once its sessions end.
            entry.offline = true;
            entry.remove_when_idle = true;
            tracing::info!(tid, target = %entry.name, sessions = entry.sessions.len(), "reload: target removed from the file; stopping it once idle");
        }
        self.stop_idle_targets();
        for change in plan.change {
            self.apply_change(change);
        }
        for (conf, stores, limits) in plan.start {
            self.start_configured(conf, stores, limits);
        }
        tracing::info!(started, stopped, kept = changed, "reload: applied");
    }

    fn apply_change(&mut self, change: TargetChange) {
        let Some(entry) = self.targets.iter_mut().find(|t| t.tid == change.tid) else {
            return;
        };
        if entry.addresses != change.addresses || entry.initiator_names != change.names {
            tracing::info!(tid = entry.tid, "reload: access rules changed");
        }
        entry.addresses = change.addresses;
        entry.initiator_names = change.names;
        entry.limits = change.limits;
        entry.accounts = change.accounts;
        let tid = entry.tid;
        if entry.nop != change.nop {
            entry.nop = change.nop;
            tracing::info!(tid, "reload: NOP-In pings changed");
            self.start_pending(PendingKind::NopUpdate {
                tid,
                nop: change.nop,
            });
        }
        // Removals first: a replaced LUN is removed, then added back with its new store.
        for lun in change.remove_luns {
            tracing::info!(tid, lun, "reload: removing LUN");
            self.start_pending(PendingKind::LunRemove { tid, lun });
        }
        for record in change.add_luns {
            tracing::info!(tid, lun = record.conf.lun, "reload: adding LUN");
            self.start_pending(PendingKind::LunAdd {
                tid,
                record: Box::new(record),
            });
        }
        for record in change.update_luns {
            tracing::info!(tid, lun = record.conf.lun, "reload: updating LUN");
            self.start_pending(PendingKind::LunUpdate {
                tid,
                record: Box::new(record),
            });
        }
    }

    fn start_pending(&mut self, kind: PendingKind) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.pending.insert(
            seq,
            PendingAdmin {
                conn: NO_CONN,
                kind,
            },
        );
        self.pending_start(seq);
    }

    fn start_configured(
        &mut self,
        conf: TargetConf,
        stores: daemon::LunStores,
        limits: TargetLimits,
    ) {
        let mut tid = conf.tid;
        while self.targets.iter().any(|t| t.tid == tid)
            || self.stopping_targets.iter().any(|(t, _, _)| *t == tid)
        {
            tid += 1;
        }
        let conf = TargetConf { tid, ..conf };
        let cpu = conf
            .cpu
            .or_else(|| (!self.cpus.is_empty()).then(|| self.cpus[tid as usize % self.cpus.len()]));
        let entry = match daemon::start_configured_target(
            &conf,
            stores,
            limits,
            cpu,
            conf.nop(self.timeouts.nop),
            self.state_dir.as_deref(),
            self.to_self.clone(),
        ) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::error!(tid, target = %conf.name, "reload: cannot start the target: {e}");
                return;
            }
        };
        tracing::info!(tid, target = %conf.name, "reload: target started");
        self.targets.push(entry);
    }

    /// Stops the targets a reload removed once they have no session left.
    pub(crate) fn stop_idle_targets(&mut self) {
        while let Some(i) = self
            .targets
            .iter()
            .position(|t| t.remove_when_idle && t.sessions.is_empty())
        {
            let entry = self.targets.remove(i);
            let _ = entry.handle.tx.send(TargetMsg::Stop);
            tracing::info!(tid = entry.tid, target = %entry.name, "stopping a removed target");
            self.stopping_targets.push((entry.tid, entry.handle, None));
        }
    }
}
