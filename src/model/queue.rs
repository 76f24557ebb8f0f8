//! What an operator may ask to air outside the plan: a bulletin for the next slot, or now.

named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum Wanted("a time to air") {
        NextSlot = "next_slot",
        Now = "now",
    }
}

/// A bulletin an operator asked to air.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct QueueItem {
    pub id: i64,
    pub clip_id: i64,
    pub when: Wanted,
    pub created_at: String,
    pub taken_at: Option<String>,
}
