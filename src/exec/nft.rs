//! nft (to be written).
