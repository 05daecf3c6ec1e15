#![no_main]
use libfuzzer_sys::fuzz_target;

macro_rules! check {
    ($v:ident, $idx:expr, $text:expr) => {{
        let actions = evproto_ocpp_types::$v::ACTIONS;
        let name = actions[$idx % actions.len()].name;
        if let Ok(req) = evproto_ocpp_types::$v::Request::decode(name, $text) {
            let again = evproto_ocpp_types::$v::Request::decode(name, &req.to_json())
                .expect("re-encoded request decodes");
            assert_eq!(req, again);
        }
        if let Ok(res) = evproto_ocpp_types::$v::Response::decode(name, $text) {
            let again = evproto_ocpp_types::$v::Response::decode(name, &res.to_json())
                .expect("re-encoded response decodes");
            assert_eq!(res, again);
        }
    }};
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let idx = usize::from(pick);
    check!(v16, idx, text);
    check!(v201, idx, text);
    check!(v21, idx, text);
});
