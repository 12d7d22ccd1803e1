//! The three event topics as a type. A record's topic name is resolved to
//! an [`EventTopic`] once, and state kept per topic is a [`PerTopic`]
//! indexed by it, never an array indexed by a bare number.

use std::ops::{Index, IndexMut};
use std::sync::Arc;

use newsflow_settings::Settings;

/// One of the co-partitioned event topics (which types each carries is
/// core's list, `newsflow_core::EVENT_TYPES`).
pub use newsflow_core::EventTopic;

/// One value per event topic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerTopic<T>([T; 3]);

impl<T> PerTopic<T> {
    /// The value `f` gives for each topic.
    pub fn from_fn(f: impl FnMut(EventTopic) -> T) -> Self {
        PerTopic(EventTopic::ALL.map(f))
    }

    /// Each topic with its value.
    pub fn iter(&self) -> impl Iterator<Item = (EventTopic, &T)> {
        EventTopic::ALL.into_iter().zip(self.0.iter())
    }

    /// The values.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }
}

impl<T: Copy> PerTopic<Option<T>> {
    /// The topics that have a value, with it.
    pub fn known(&self) -> impl Iterator<Item = (EventTopic, T)> + '_ {
        self.iter()
            .filter_map(|(topic, value)| value.map(|v| (topic, v)))
    }
}

impl<T> Index<EventTopic> for PerTopic<T> {
    type Output = T;

    fn index(&self, topic: EventTopic) -> &T {
        &self.0[topic as usize]
    }
}

impl<T> IndexMut<EventTopic> for PerTopic<T> {
    fn index_mut(&mut self, topic: EventTopic) -> &mut T {
        &mut self.0[topic as usize]
    }
}

/// The configured name of each event topic.
pub type TopicNames = PerTopic<Arc<str>>;

impl TopicNames {
    /// The names in `settings.topics`.
    pub fn from_settings(settings: &Settings) -> Self {
        let [articles, comments, forum_posts] = settings.topics.event_topics();
        PerTopic([articles.into(), comments.into(), forum_posts.into()])
    }

    /// Which event topic `name` is, if any.
    pub fn find(&self, name: &str) -> Option<EventTopic> {
        self.iter()
            .find(|(_, configured)| &***configured == name)
            .map(|(topic, _)| topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_their_topic_and_index_their_value() {
        let names: TopicNames = PerTopic(["a".into(), "c".into(), "f".into()]);
        assert_eq!(names.find("c"), Some(EventTopic::Comments));
        assert_eq!(names.find("x"), None);
        let mut next: PerTopic<Option<i64>> = PerTopic::default();
        next[EventTopic::ForumPosts] = Some(7);
        let set: Vec<_> = next.iter().filter(|(_, n)| n.is_some()).collect();
        assert_eq!(set, [(EventTopic::ForumPosts, &Some(7))]);
    }
}
