//! Where a push landed: the two cursors of a push answer, and whether they let the device
//! skip pulling its own writes back.
//!
//! A push answer may say where the pushed entity's pull cursor stood just before the
//! request committed and just after. When the device's stored cursor is the "before" one,
//! nothing but this request committed since the device last pulled: every row between the
//! two cursors is a row this request changed, and its results already carry what the
//! server stored. The device then stores the "after" cursor in the transaction that stores
//! the results, and its next pull of the entity starts past its own writes. In every other
//! case the cursor stays where it is and the pull brings the rows back as before.
//!
//! This module judges the cursors; it never writes (the push answer's transaction, in
//! `push.rs`, does) and never reads or moves the cursor of any other entity.

use crate::wire::SyncPushResponse;

/// The two cursors of a push answer that carried both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Landing {
    pub(crate) before: String,
    pub(crate) after: String,
}

/// The answer's cursors, judged against `device_cursor` (the device's stored cursor of the
/// pushed entity, `""` when it has none). `Ok(None)`: the answer carries no cursors.
/// `Err`: cursors no server could send, so the whole answer is refused.
///
/// Cursors are opaque, but their order is known where they meet: the device's cursor is a
/// position the server issued earlier, so it is never past "before", and "after" is never
/// before "before". Hence "after" cannot be the start unless "before" is, and cannot be
/// the device's own cursor unless "before" is too.
pub(crate) fn read_landing(
    answer: &SyncPushResponse,
    device_cursor: &str,
) -> Result<Option<Landing>, &'static str> {
    match (&answer.cursor_before, &answer.cursor_after) {
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => {
            Err("push response carries one of its two cursors without the other")
        }
        (Some(before), Some(after)) => {
            if after.is_empty() && !before.is_empty() {
                return Err("push response's cursor after the push is the start");
            }
            if after == device_cursor && before != device_cursor {
                return Err("push response's cursor after the push precedes the one before it");
            }
            Ok(Some(Landing {
                before: before.clone(),
                after: after.clone(),
            }))
        }
    }
}

/// The cursor the device stores with the push results, if any: "after" when the device
/// stood at "before" and every result that confirmed a write told it all the server stored
/// (`every_write_confirmed`). `ignore_before` is the planted defect that skips the "before"
/// comparison, so a commit of another device between the two pulls is never pulled.
pub(crate) fn cursor_to_store(
    landing: Option<&Landing>,
    device_cursor: &str,
    every_write_confirmed: bool,
    ignore_before: bool,
) -> Option<String> {
    let landing = landing?;
    let caught_up = landing.before == device_cursor || ignore_before;
    (caught_up && every_write_confirmed && landing.after != device_cursor)
        .then(|| landing.after.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(before: Option<&str>, after: Option<&str>) -> SyncPushResponse {
        SyncPushResponse {
            results: Vec::new(),
            cursor_before: before.map(str::to_owned),
            cursor_after: after.map(str::to_owned),
        }
    }

    #[test]
    fn impossible_cursor_pairs_are_refused() {
        assert!(read_landing(&answer(Some("1.a"), None), "1.a").is_err());
        assert!(read_landing(&answer(None, Some("2.a")), "1.a").is_err());
        assert!(read_landing(&answer(Some("1.a"), Some("")), "1.a").is_err());
        assert!(read_landing(&answer(Some("2.b"), Some("1.a")), "1.a").is_err());
        assert_eq!(read_landing(&answer(None, None), "1.a"), Ok(None));
        assert!(read_landing(&answer(Some(""), Some("")), "")
            .unwrap()
            .is_some());
        assert!(read_landing(&answer(Some("1.a"), Some("1.a")), "1.a")
            .unwrap()
            .is_some());
    }

    #[test]
    fn only_a_device_standing_at_before_moves_to_after() {
        let landing = Landing {
            before: "1.a".into(),
            after: "2.b".into(),
        };
        let store =
            |device, confirmed, ignore| cursor_to_store(Some(&landing), device, confirmed, ignore);
        assert_eq!(store("1.a", true, false), Some("2.b".to_owned()));
        assert_eq!(
            store("0.z", true, false),
            None,
            "another commit came between"
        );
        assert_eq!(
            store("1.a", false, false),
            None,
            "a result did not say it all"
        );
        assert_eq!(
            store("0.z", true, true),
            Some("2.b".to_owned()),
            "the defect"
        );
        assert_eq!(cursor_to_store(None, "1.a", true, false), None);
    }
}
