//! Preprocessing as bundle data, between validating a request and admitting it: what turns a
//! bundle's public inputs (text, images) into its graph's own inputs. One module per
//! kind; each depends on nothing of the server.

pub mod image;
pub mod tokens;
