//! Pattern metadata as JSON text: written as `metadata_json`, read back both as a `Struct` (the
//! default) and, with `metadata_as_json`, as JSON text, from every answer that carries
//! patterns; and the mistakes refused with INVALID_ARGUMENT naming the field, the JavaScript
//! trap (an empty `Struct` sent alongside the JSON) first.

use hotplane::{api::convert::struct_to_json, pb};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    both_backends,
    helpers::{Backend, TestApp, learn_req, match_req},
};

both_backends!(json_written_is_read_back_in_both_forms);

/// The object a `metadata_json` answer holds (compared parsed: PostgreSQL respaces it).
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

async fn json_written_is_read_back_in_both_forms(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    // Large enough (over 1 KiB) that the Struct form of a match is encoded once per generation
    // and shared: the JSON form must not disturb that path, nor be served from it.
    let doc = json!({
        "action": "list_workflows",
        "params": {"active": true, "limit": 10, "tags": ["a", null]},
        "note": "già ok ".repeat(200),
    });
    let learned = app
        .patterns
        .learn_pattern(pb::LearnPatternRequest {
            metadata_json: doc.to_string(),
            metadata_as_json: true,
            ..learn_req("Quali sono i workflow attivi?", "workflow_status", 0.95)
        })
        .await
        .expect("learn")
        .into_inner();
    let row = learned.pattern.expect("row");
    assert!(learned.served);
    assert_eq!(parsed(&row.metadata_json), doc);
    assert!(row.metadata.is_none(), "one form per answer");
    let id = row.id;

    // GetPattern: Struct by default, JSON when asked.
    let get = |as_json| pb::GetPatternRequest {
        id,
        metadata_as_json: as_json,
    };
    let p = app.patterns.get_pattern(get(false)).await.expect("get");
    let p = p.into_inner().pattern.expect("row");
    assert_eq!(struct_to_json(p.metadata.as_ref().expect("Struct")), doc);
    assert_eq!(p.metadata_json, "");
    let p = app.patterns.get_pattern(get(true)).await.expect("get");
    let p = p.into_inner().pattern.expect("row");
    assert_eq!(parsed(&p.metadata_json), doc);
    assert!(p.metadata.is_none());

    // ListPatterns, when asked.
    let page = app
        .patterns
        .list_patterns(pb::ListPatternsRequest {
            metadata_as_json: true,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(parsed(&page.patterns[0].metadata_json), doc);

    // MatchPattern, Struct, JSON, Struct again (the shared encoding is still the Struct one).
    for as_json in [false, true, false, true] {
        let m = app
            .patterns
            .match_pattern(pb::MatchPatternRequest {
                metadata_as_json: as_json,
                ..match_req("quali sono i WORKFLOW attivi")
            })
            .await
            .expect("match")
            .into_inner();
        let p = m.pattern.expect("matched");
        assert_eq!(p.id, id);
        if as_json {
            assert_eq!(parsed(&p.metadata_json), doc);
            assert!(p.metadata.is_none());
        } else {
            assert_eq!(struct_to_json(p.metadata.as_ref().expect("Struct")), doc);
            assert_eq!(p.metadata_json, "");
        }
    }

    // BatchMatchPatterns, JSON: every copy, and a miss stays a miss.
    let batch = app
        .patterns
        .batch_match_patterns(pb::BatchMatchPatternsRequest {
            queries: vec![
                "quali sono i workflow attivi".into(),
                "nessuna corrispondenza".into(),
                "Quali sono i workflow attivi?".into(),
            ],
            metadata_as_json: true,
            ..Default::default()
        })
        .await
        .expect("batch")
        .into_inner();
    assert!(!batch.results[1].matched);
    for i in [0, 2] {
        let p = batch.results[i].pattern.as_ref().expect("matched");
        assert_eq!(parsed(&p.metadata_json), doc);
        assert!(p.metadata.is_none());
    }

    // Approve and Disable answer the row in the form asked for too.
    let disabled = app
        .patterns
        .disable_pattern(pb::DisablePatternRequest {
            id,
            reason: "test".into(),
            metadata_as_json: true,
        })
        .await
        .expect("disable")
        .into_inner();
    assert_eq!(parsed(&disabled.pattern.expect("row").metadata_json), doc);
    let approved = app
        .patterns
        .approve_pattern(pb::ApprovePatternRequest {
            id,
            reason: "test".into(),
            metadata_as_json: false,
        })
        .await
        .expect("approve")
        .into_inner();
    let row = approved.pattern.expect("row");
    assert_eq!(struct_to_json(row.metadata.as_ref().expect("Struct")), doc);

    // A row without metadata: empty text, in both forms.
    let bare = app
        .patterns
        .learn_pattern(pb::LearnPatternRequest {
            metadata_as_json: true,
            ..learn_req("nessun dato in più", "bare", 0.95)
        })
        .await
        .expect("learn")
        .into_inner()
        .pattern
        .expect("row");
    assert_eq!((bare.metadata_json.as_str(), bare.metadata), ("", None));
}

/// The field a refusal names, asserting INVALID_ARGUMENT and a BadRequest detail.
fn refused_field(err: &tonic::Status) -> String {
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let details = err.get_error_details();
    let br = details.bad_request().expect("a BadRequest");
    assert_eq!(br.field_violations.len(), 1, "{err:?}");
    br.field_violations[0].field.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_metadata_mistakes_are_refused_naming_the_field() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let learn = |metadata: Option<prost_types::Struct>, json: &str| pb::LearnPatternRequest {
        metadata,
        metadata_json: json.to_owned(),
        ..learn_req("una domanda qualsiasi", "cat", 0.95)
    };
    let action =
        || hotplane::api::convert::json_to_struct(&json!({"action": "x"})).expect("an object");
    let too_big = json!({ "blob": "x".repeat(16 * 1024) }).to_string();
    let cases = [
        // What JavaScript sends for `metadata: {action: 'x'}` plus the JSON: the trap.
        (
            learn(Some(prost_types::Struct::default()), r#"{"action":"x"}"#),
            "metadata",
            "present but empty",
        ),
        (
            learn(Some(action()), r#"{"action":"x"}"#),
            "metadata_json",
            "together with metadata",
        ),
        (
            learn(None, r#"{"action":"#),
            "metadata_json",
            "not valid JSON",
        ),
        (learn(None, "[1, 2]"), "metadata_json", "JSON object"),
        (learn(None, "null"), "metadata_json", "JSON object"),
        (
            learn(None, &too_big),
            "metadata_json",
            "at most 16384 bytes",
        ),
    ];
    for (req, field, words) in cases {
        let err = app.patterns.learn_pattern(req).await.expect_err("refused");
        assert_eq!(refused_field(&err), field, "{err:?}");
        assert!(err.message().contains(words), "{err:?}");
    }
    // Nothing was stored.
    let page = app
        .patterns
        .list_patterns(pb::ListPatternsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(page.patterns.is_empty(), "{page:?}");
    // The Struct form alone, even empty, is as before (an empty object is metadata).
    app.patterns
        .learn_pattern(learn(Some(prost_types::Struct::default()), ""))
        .await
        .expect("an empty Struct alone is accepted");
}
