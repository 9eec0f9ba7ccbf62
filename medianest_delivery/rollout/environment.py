"""One environment's replicas, router and scrape targets, moved together.

Every operation updates the persisted router state first, then the live
HAProxy, then Prometheus' targets, so that a crash at any point leaves files
that describe what should be running (and `reconcile` can restore it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medianest_delivery.appconfig import DEFAULT_DATABASE_SERVER, AppConfig, Component
from medianest_delivery.errors import StackError
from medianest_delivery.rollout.app_role import app_database_url, app_role_name, ensure_app_role
from medianest_delivery.rollout.metrics import write_scrape_targets
from medianest_delivery.rollout.previews import plan_for, release_preview
from medianest_delivery.rollout.router import HAProxyRouter, Router, RouterState, new_backend
from medianest_delivery.rollout.runtime import ReplicaSpec, Runtime, wait_until_healthy
from medianest_delivery.rollout.topology import SLOTS, EnvironmentPlan, other_slot
from medianest_delivery.settings import StackSettings

# How long a slot that lost its traffic may take to answer its requests in flight before its replicas go:
# HAProxy's `timeout server`, the longest a request may take anyway.
SLOT_DRAIN_SECONDS = 30.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotRelease:
    component: str
    slot: str
    image: str
    version: str
    replicas: int


class EnvironmentController:
    def __init__(
        self,
        name: str,
        config: AppConfig,
        runtime: Runtime,
        settings: StackSettings,
        router: Router | None = None,
        app_password: Callable[[str], str] | None = None,
        database_server: str = DEFAULT_DATABASE_SERVER,
    ) -> None:
        """``app_password`` gives the password of an app database role (by role name): replicas connect as
        that role, never as ours. Without it, replicas that need ``{database_url}`` cannot start.
        ``database_server`` is where the environment's database lives (its target's server)."""
        self.name = name
        self.config = config
        self.runtime = runtime
        self.settings = settings
        self.plan: EnvironmentPlan = plan_for(name, settings.routers_dir)
        self.router: Router = router or HAProxyRouter(settings.routers_dir, name)
        self.app_password = app_password
        self.database_server = database_server

    # -- state -------------------------------------------------------------
    def state(self) -> RouterState:
        state = self.router.load_state() or RouterState(self.name, self.plan.stats_port)
        for index, component in enumerate(self.config.components):
            if component.name not in state.backends:
                state.backends[component.name] = new_backend(self.plan, component.name, index, component.health)
            backend = state.backends[component.name]
            backend.affinity = component.canary_affinity
            # A state written before the port layout moved by one keeps the ports of the slots that serve;
            # an idle slot takes the current layout, so the next release lands where every runtime can put it.
            current = new_backend(self.plan, component.name, index).slot_ports
            for slot in SLOTS:
                if not backend.active_replicas[slot] and not backend.weights[slot]:
                    backend.slot_ports[slot] = current[slot]
        return state

    def index(self, component: str) -> int:
        return self.config.component_index(component)

    def router_url(self, component: str) -> str:
        return self.plan.router_url(self.index(component))

    def database_url(self) -> str:
        """Our own (migrating, administering) connection to the environment's database: never given to replicas."""
        return self.config.database_url(self.name, self.database_server)

    def app_database_url(self, slot: str) -> str:
        """What a slot's replicas get: the slot's app role, its password, the environment's database only."""
        if self.app_password is None:
            raise StackError(f"{self.name}: no source for the app database password; replicas cannot get a role")
        admin = self.database_url()
        password = self.app_password(app_role_name(admin, slot))
        ensure_app_role(admin, slot, password)
        return app_database_url(admin, slot, password)

    def stable_slot(self, component: str) -> str:
        return self.state().backends[component].stable_slot

    def candidate_slot(self, component: str) -> str:
        return other_slot(self.stable_slot(component))

    def ensure_router(self) -> RouterState:
        state = self.state()
        self.router.save_state(state)
        self.router.start(state)
        write_scrape_targets(
            self.settings.scrape_targets_dir,
            f"router-{self.name}",
            [{"targets": [f"127.0.0.1:{state.stats_port}"], "labels": {"env": self.name}}],
        )
        return state

    # -- replicas ----------------------------------------------------------
    def component_env(self, component: Component, slot: str, extra: dict[str, str]) -> dict[str, str]:
        values: dict[str, str] = {}
        needs_database = any("{database_url}" in template for template in component.env.values())
        database_url = self.app_database_url(slot) if needs_database else ""
        for key, template in component.env.items():
            value = template.replace("{database_url}", database_url).replace("{environment}", self.name)
            for other in self.config.components:
                value = value.replace(f"{{router_url:{other.name}}}", self.router_url(other.name))
            values[key] = value
        return {**values, **extra}

    def start_slot(self, release: SlotRelease, extra_env: dict[str, str]) -> list[ReplicaSpec]:
        """Run the release's replicas in ``release.slot`` (not routed yet: weight 0)."""
        component = self.config.component(release.component)
        self.runtime.remove(self.name, release.component, release.slot)
        ports = self.state().backends[release.component].slot_ports[release.slot]
        values = self.component_env(component, release.slot, extra_env)
        # Only an app that reads <KEY>_FILE gets its database URL as a secret file; any other would not start.
        secret_keys = (
            {key for key, template in component.env.items() if "{database_url}" in template}
            if component.secrets_as_files
            else set()
        )
        specs = [
            ReplicaSpec(
                environment=self.name,
                component=release.component,
                slot=release.slot,
                replica=i,
                image=release.image,
                port=ports[i],
                version=release.version,
                env={k: v for k, v in values.items() if k not in secret_keys},
                secrets={k: v for k, v in values.items() if k in secret_keys},
            )
            for i in range(release.replicas)
        ]
        self.runtime.run_slot(specs)
        self.write_app_targets()
        return specs

    def wait_healthy(self, specs: list[ReplicaSpec], deadline_seconds: float) -> dict[str, str]:
        component = self.config.component(specs[0].component)
        return wait_until_healthy([s.url for s in specs], [component.health, component.ready], deadline_seconds)

    def write_app_targets(self) -> None:
        groups: list[dict[str, Any]] = []
        for replica in self.runtime.list(self.name):
            component = self.config.component(replica.component)
            if component.metrics is None:
                continue
            groups.append(
                {
                    "targets": [f"127.0.0.1:{replica.port}"],
                    "labels": {
                        "env": self.name,
                        "component": replica.component,
                        "slot": replica.slot,
                        "release_version": replica.version,
                        "__metrics_path__": component.metrics,
                    },
                }
            )
        write_scrape_targets(self.settings.scrape_targets_dir, f"app-{self.name}", groups)

    # -- traffic -----------------------------------------------------------
    def set_weights(self, component: str, candidate_percent: int, candidate_replicas: int) -> RouterState:
        """Send ``candidate_percent`` of the component's traffic to the non-stable slot."""
        state = self.state()
        backend = state.backends[component]
        stable, candidate = backend.stable_slot, other_slot(backend.stable_slot)
        if not 0 <= candidate_percent <= 100:
            raise StackError(f"{self.name}/{component}: canary weight {candidate_percent} must be 0..100")
        if candidate_replicas < 1:
            raise StackError(f"{self.name}/{component}: a canary needs at least one replica")
        backend.active_replicas[candidate] = candidate_replicas
        if backend.active_replicas[stable] == 0:  # first release: no stable slot to share with
            candidate_percent = 100
        backend.weights[candidate], backend.weights[stable] = candidate_percent, 100 - candidate_percent
        self.router.apply(state, [component])
        return state

    def promote(self, component: str) -> str:
        """Flip roles: the candidate slot becomes stable and takes all traffic.

        The previous stable slot keeps running at weight 0, so `revert` is an
        instant switch back until `decommission` removes it.
        """
        state = self.state()
        backend = state.backends[component]
        old, new = backend.stable_slot, other_slot(backend.stable_slot)
        backend.stable_slot = new
        backend.weights[new], backend.weights[old] = 100, 0
        backend.verdict_pending = backend.active_replicas[old] > 0  # a first release has nothing to go back to
        self.router.apply(state, [component])
        return new

    def revert(self, component: str) -> str:
        """Undo `promote`: the previous slot (still running) takes all traffic again; the new one goes."""
        state = self.state()
        backend = state.backends[component]
        new, old = backend.stable_slot, other_slot(backend.stable_slot)
        if not backend.active_replicas[old]:
            raise StackError(f"{self.name}/{component}: nothing to revert to (slot {old} is decommissioned)")
        backend.stable_slot = old
        backend.weights[old], backend.weights[new] = 100, 0
        backend.active_replicas[new] = 0
        backend.slot_releases.pop(new, None)
        backend.verdict_pending = False
        self.router.apply(state, [component])
        self._remove_slot(component, new)
        return old

    def accept_verdicts(self, components: list[str]) -> None:
        """The rollout's verdict passed: its promoted releases are the judged ones now (one state write for all,
        so a fault while decommissioning can never send a component that passed back to the previous release)."""
        state = self.state()
        for component in components:
            state.backends[component].verdict_pending = False
        self.router.save_state(state)

    def decommission(self, component: str) -> None:
        """Remove the previous stable slot once the rollout's verdict passed: the new release is now the judged one."""
        state = self.state()
        backend = state.backends[component]
        old = other_slot(backend.stable_slot)
        backend.weights[old], backend.active_replicas[old] = 0, 0
        backend.slot_releases.pop(old, None)
        backend.verdict_pending = False
        self.router.apply(state, [component])
        self._remove_slot(component, old)

    def abort_candidate(self, component: str) -> None:
        """Weight 0 for the candidate, then tear it down: stable keeps serving alone."""
        state = self.state()
        backend = state.backends[component]
        candidate = other_slot(backend.stable_slot)
        backend.weights[candidate] = 0
        backend.active_replicas[candidate] = 0
        backend.slot_releases.pop(candidate, None)
        if backend.active_replicas[backend.stable_slot]:
            backend.weights[backend.stable_slot] = 100
        self.router.apply(state, [component])
        self._remove_slot(component, candidate)

    def _remove_slot(self, component: str, slot: str) -> None:
        """Remove a slot the router no longer sends traffic to, once its requests in flight have been answered."""
        busy = self.router.wait_idle(component, slot, SLOT_DRAIN_SECONDS)
        if busy:
            logger.warning(
                "%s/%s slot %s still had %d requests in flight after %.0f s; removing it anyway",
                self.name,
                component,
                slot,
                busy,
                SLOT_DRAIN_SECONDS,
            )
        self.runtime.remove(self.name, component, slot)
        self.write_app_targets()

    def tear_down(self) -> None:
        """Remove replicas, router, its files and scrape targets, and free a preview's ports."""
        self.runtime.remove(self.name)
        self.router.stop()
        self.router.remove_files()
        write_scrape_targets(self.settings.scrape_targets_dir, f"app-{self.name}", [])
        write_scrape_targets(self.settings.scrape_targets_dir, f"router-{self.name}", [])
        release_preview(self.name, self.settings.routers_dir)

    # -- recovery ----------------------------------------------------------
    def reconcile(self, health_deadline_seconds: float = 60) -> list[str]:
        """Bring router and replicas back to the recorded state after a crash or restart; what was done.

        A rollout that died (or was cancelled) leaves one of two states. Before
        promotion, a candidate slot with replicas or traffic: it is taken out
        (weight 0, replicas removed), never promoted. After promotion and before
        the verdict (`verdict_pending`), an unjudged release at 100% beside the
        last judged one at weight 0: traffic goes back to the judged one, the
        unjudged one is removed. Either way the environment ends on a judged
        release. Stable replicas that are missing are started again from the
        recorded release.
        """
        state = self.ensure_router()
        actions: list[str] = []
        running = {r.name for r in self.runtime.list(self.name) if r.running}
        for name in list(state.backends):
            backend = self.state().backends[name]
            judged = other_slot(backend.stable_slot)
            if backend.verdict_pending and backend.active_replicas[judged]:
                unjudged = backend.slot_releases.get(backend.stable_slot, {}).get("version", "?")
                previous = backend.slot_releases.get(judged, {}).get("version", "?")
                self.revert(name)
                actions.append(f"{name}: promoted release {unjudged} had no verdict; back on judged release {previous}")
                backend = self.state().backends[name]
            candidate = other_slot(backend.stable_slot)
            if backend.active_replicas[candidate] or backend.weights[candidate]:
                self.abort_candidate(name)
                actions.append(f"{name}: interrupted rollout in slot {candidate} rolled back")
            elif any(r.component == name and r.slot == candidate for r in self.runtime.list(self.name)):
                self.abort_candidate(name)  # a slot that died half-started: running, never routed
                actions.append(f"{name}: unrouted replicas in slot {candidate} removed")
            release = backend.slot_releases.get(backend.stable_slot)
            replicas = backend.active_replicas[backend.stable_slot]
            if release and replicas:
                expected = [f"mn-{self.name}-{name}-{backend.stable_slot}{i}" for i in range(replicas)]
                if any(e not in running for e in expected):
                    slot_release = SlotRelease(
                        name, backend.stable_slot, release["image"], release["version"], replicas
                    )
                    specs = self.start_slot(slot_release, release.get("extra_env", {}))
                    failures = self.wait_healthy(specs, health_deadline_seconds)
                    if failures:
                        raise StackError(f"{self.name}/{name}: stable replicas did not come back: {failures}")
                    actions.append(f"{name}: restarted missing stable replicas of {release['version']}")
        self.router.apply(self.state())
        return actions
