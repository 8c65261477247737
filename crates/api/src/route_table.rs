//! The documented routes with their methods, read from the OpenAPI document: the router
//! answers 405 with `Allow` from it.

use actix_web::dev::ResourceDef;
use utoipa::openapi::OpenApi;

/// Every documented path with its methods.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<(ResourceDef, Vec<String>)>,
}

impl RouteTable {
    /// The table of `doc`'s paths.
    #[must_use]
    pub fn from_openapi(doc: &OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods: Vec<String> = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(m, _)| m.to_owned())
                .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self { routes }
    }

    /// The methods documented for the routes matching `path` (empty when none matches).
    #[must_use]
    pub fn allowed_methods(&self, path: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .routes
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
