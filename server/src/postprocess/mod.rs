//! Postprocessing as bundle data, between a run and encoding its answer: pooling, normalisation
//! and softmax of a graph's outputs. Depends on nothing of the server.

pub mod pooling;
