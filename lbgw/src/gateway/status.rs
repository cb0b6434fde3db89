//! The status a Gateway API controller would write: Gateway, listener and HTTPRoute parent
//! conditions, as plain data with a readable rendering (what `lbgw check` prints).

use std::{fmt, net::IpAddr};

use super::GatewayId;
use crate::config::ObjectRef;

/// A status condition (metav1.Condition without timestamps and generations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The condition type, e.g. `Accepted`.
    pub type_: &'static str,
    /// `True` or `False` (lbgw never reports `Unknown`).
    pub status: bool,
    /// A Gateway API reason, e.g. `InvalidCertificateRef`.
    pub reason: &'static str,
    /// Human-readable details.
    pub message: String,
}

impl Condition {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }

    /// Whether the condition reports a problem: a positive-polarity condition (`Accepted`,
    /// `Programmed`, `ResolvedRefs`) that is False, or a negative-polarity one (`Conflicted`,
    /// `PartiallyInvalid`) that is True.
    pub fn is_problem(&self) -> bool {
        match self.type_ {
            "Conflicted" | "PartiallyInvalid" => self.status,
            _ => !self.status,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.status { "True" } else { "False" };
        write!(f, "{}={status} {}", self.type_, self.reason)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// The status of every managed Gateway and of every HTTPRoute that refers to one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayStatus {
    /// Managed Gateways, in configuration order.
    pub gateways: Vec<GatewayReport>,
    /// HTTPRoutes, in configuration order.
    pub routes: Vec<RouteReport>,
}

/// GatewayStatus of one Gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayReport {
    /// The Gateway.
    pub id: GatewayId,
    /// Its VIPs (GatewayStatus.addresses).
    pub addresses: Vec<IpAddr>,
    /// `Accepted` and `Programmed`.
    pub conditions: Vec<Condition>,
    /// One per listener, in spec order.
    pub listeners: Vec<ListenerReport>,
}

/// ListenerStatus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerReport {
    /// The listener name.
    pub name: String,
    /// Its port as configured.
    pub port: i32,
    /// Its protocol as configured.
    pub protocol: String,
    /// Its hostname, if any.
    pub hostname: Option<String>,
    /// ListenerStatus.attachedRoutes: routes with `Accepted=True` attached to this listener.
    pub attached_routes: u32,
    /// `Accepted`, `Conflicted`, `ResolvedRefs`, `Programmed`.
    pub conditions: Vec<Condition>,
}

/// The status of one HTTPRoute: one entry per parentRef to a managed Gateway (or to a
/// Gateway that does not exist). Routes with no such parentRef are not reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteReport {
    /// The HTTPRoute.
    pub id: ObjectRef,
    /// RouteStatus.parents.
    pub parents: Vec<ParentReport>,
}

/// RouteParentStatus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentReport {
    /// Index of the parentRef in `spec.parentRefs`.
    pub index: usize,
    /// The Gateway the parentRef names.
    pub gateway: GatewayId,
    /// ParentReference.sectionName, if set.
    pub section_name: Option<String>,
    /// ParentReference.port, if set.
    pub port: Option<i32>,
    /// The listeners the route attached to through this parentRef.
    pub listeners: Vec<String>,
    /// `Accepted`, `ResolvedRefs`, and `PartiallyInvalid` when some rules were dropped.
    pub conditions: Vec<Condition>,
}

impl ParentReport {
    /// Whether the route is accepted by this parent.
    pub fn accepted(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.status)
    }
}

impl fmt::Display for ParentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parentRefs[{}] Gateway {}", self.index, self.gateway)?;
        if let Some(section) = &self.section_name {
            write!(f, " sectionName {section}")?;
        }
        if let Some(port) = self.port {
            write!(f, " port {port}")?;
        }
        Ok(())
    }
}

impl GatewayStatus {
    /// One line per problem condition ([`Condition::is_problem`]), naming the object:
    /// what `lbgw check` warns about.
    pub fn problems(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for gw in &self.gateways {
            for c in gw.conditions.iter().filter(|c| c.is_problem()) {
                lines.push(format!("Gateway {}: {c}", gw.id));
            }
            for l in &gw.listeners {
                for c in l.conditions.iter().filter(|c| c.is_problem()) {
                    lines.push(format!("Gateway {} listener {}: {c}", gw.id, l.name));
                }
            }
        }
        for route in &self.routes {
            for p in &route.parents {
                for c in p.conditions.iter().filter(|c| c.is_problem()) {
                    lines.push(format!("{} {p}: {c}", route.id));
                }
            }
        }
        lines
    }

    /// Whether no condition reports a problem.
    pub fn is_ok(&self) -> bool {
        self.problems().is_empty()
    }

    /// The Gateway `id`.
    pub fn gateway(&self, id: &GatewayId) -> Option<&GatewayReport> {
        self.gateways.iter().find(|g| &g.id == id)
    }
}

impl GatewayReport {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerReport> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// The condition of type `type_` in `conditions`.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn write_conditions(f: &mut fmt::Formatter<'_>, indent: &str, list: &[Condition]) -> fmt::Result {
    for c in list {
        let status = if c.status { "True" } else { "False" };
        write!(f, "{indent}{:<16} {status:<5}  {}", c.type_, c.reason)?;
        if !c.message.is_empty() {
            write!(f, ": {}", c.message)?;
        }
        writeln!(f)?;
    }
    Ok(())
}

impl fmt::Display for GatewayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Gateway status:")?;
        if self.gateways.is_empty() {
            writeln!(f, "  (no Gateways)")?;
        }
        for gw in &self.gateways {
            let addresses: Vec<String> = gw.addresses.iter().map(ToString::to_string).collect();
            let addresses = if addresses.is_empty() {
                "(no address)".to_owned()
            } else {
                addresses.join(", ")
            };
            writeln!(f, "  Gateway {}  {addresses}", gw.id)?;
            write_conditions(f, "    ", &gw.conditions)?;
            for l in &gw.listeners {
                write!(f, "    listener {}  {} port {}", l.name, l.protocol, l.port)?;
                if let Some(hostname) = &l.hostname {
                    write!(f, " hostname {hostname}")?;
                }
                writeln!(f, "  attached routes: {}", l.attached_routes)?;
                write_conditions(f, "      ", &l.conditions)?;
            }
        }
        if !self.routes.is_empty() {
            writeln!(f, "HTTPRoute status:")?;
        }
        for route in &self.routes {
            writeln!(f, "  {}", route.id)?;
            for p in &route.parents {
                write!(f, "    {p}")?;
                if !p.listeners.is_empty() {
                    write!(f, "  (listeners: {})", p.listeners.join(", "))?;
                }
                writeln!(f)?;
                write_conditions(f, "      ", &p.conditions)?;
            }
        }
        Ok(())
    }
}
