//! Campaigns and sends as the store keeps them.

use leadstream_pipeline::eligibility::EventFilter;
use leadstream_pipeline::OrgId;

/// draft → scheduled → running → completed, plus paused (reversible) and cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CampaignState {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "draft" => CampaignState::Draft,
            "scheduled" => CampaignState::Scheduled,
            "running" => CampaignState::Running,
            "paused" => CampaignState::Paused,
            "completed" => CampaignState::Completed,
            "cancelled" => CampaignState::Cancelled,
            _ => return None,
        })
    }

    /// Whether the scheduler materializes this campaign's sends.
    pub fn materializes(self) -> bool {
        matches!(self, CampaignState::Scheduled | CampaignState::Running)
    }

    /// Whether sends may still be added.
    pub fn takes_sends(self) -> bool {
        !matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }
}

/// An action on a campaign's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Schedule,
    Pause,
    Resume,
    Cancel,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Schedule => "schedule",
            Transition::Pause => "pause",
            Transition::Resume => "resume",
            Transition::Cancel => "cancel",
        }
    }

    /// The state after this action from `from` (and, for a pause, the state a resume
    /// returns to), or `None` when the action is not allowed from there.
    pub fn apply(
        self,
        from: CampaignState,
        paused_from: Option<CampaignState>,
    ) -> Option<(CampaignState, Option<CampaignState>)> {
        use CampaignState::*;
        match (self, from) {
            (Transition::Schedule, Draft) => Some((Scheduled, None)),
            (Transition::Pause, Scheduled | Running) => Some((Paused, Some(from))),
            (Transition::Resume, Paused) => Some((paused_from.unwrap_or(Scheduled), None)),
            (Transition::Cancel, Draft | Scheduled | Running | Paused) => Some((Cancelled, None)),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Campaign {
    pub id: i64,
    pub org: OrgId,
    pub name: String,
    pub state: CampaignState,
    /// While paused: the state a resume returns to.
    pub paused_from: Option<CampaignState>,
    /// Set when the campaign was created with a `deliveryUrl` (registered as
    /// `endpoint_id`).
    pub delivery_url: Option<String>,
    /// The endpoint its deliveries go to.
    pub endpoint_id: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A send's instant, and the local time and zone it was given as, if so.
#[derive(Clone, Debug)]
pub struct SendTime {
    pub at_us: i64,
    /// `(localTime, timeZone)` as posted.
    pub local: Option<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Send {
    pub id: i64,
    pub campaign_id: i64,
    pub org: OrgId,
    pub time: SendTime,
    pub template_name: String,
    pub language: String,
    pub event_filter: Option<EventFilter>,
    pub use_audience_filter: bool,
    pub created_at_ms: i64,
    /// When its eligible set was fixed.
    pub materialized_at_ms: Option<i64>,
    /// Every lead of its eligible set has its delivery.
    pub emitted_all: bool,
}

#[cfg(test)]
mod tests {
    use super::CampaignState::*;
    use super::*;

    #[test]
    fn transitions_follow_the_state_machine() {
        let t = |a: Transition, from, pf| a.apply(from, pf).map(|(s, _)| s);
        assert_eq!(t(Transition::Schedule, Draft, None), Some(Scheduled));
        assert_eq!(t(Transition::Schedule, Scheduled, None), None);
        assert_eq!(t(Transition::Pause, Draft, None), None);
        assert_eq!(
            Transition::Pause.apply(Running, None),
            Some((Paused, Some(Running)))
        );
        assert_eq!(t(Transition::Resume, Paused, Some(Running)), Some(Running));
        assert_eq!(t(Transition::Resume, Running, None), None);
        assert_eq!(
            t(Transition::Cancel, Paused, Some(Running)),
            Some(Cancelled)
        );
        assert_eq!(t(Transition::Cancel, Completed, None), None);
        assert_eq!(t(Transition::Cancel, Cancelled, None), None);
        assert_eq!(t(Transition::Resume, Cancelled, None), None);
    }
}
