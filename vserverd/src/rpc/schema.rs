//! Checks a call against the committed IDL before it reaches the service.
//!
//! zlink's generated dispatcher answers a missing or mistyped parameter by closing the connection
//! and names every unknown method "unknown". The varlink spec wants `InvalidParameter` naming the
//! parameter and `MethodNotFound` naming the method, so calls are validated here, generically,
//! against the parsed IDL — one place that stays right as methods are added.

use serde_json::Value;
use zlink::idl::{CustomType, Field, Interface, Type};

/// Why a call is refused before dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallProblem {
    InterfaceNotFound(String),
    MethodNotFound(String),
    InvalidParameter(String),
}

/// The parsed interface of `org.linux-vserver.Manager`.
pub struct Schema {
    iface: Interface<'static>,
}

impl Schema {
    pub fn new(idl: &'static str) -> Result<Self, String> {
        let iface = Interface::try_from(idl).map_err(|e| format!("cannot parse the IDL: {e}"))?;
        Ok(Self { iface })
    }

    pub fn manager() -> Result<Self, String> {
        Self::new(proto::IDL)
    }

    /// Checks `method` (fully qualified) and its parameters.
    pub fn check(&self, method: &str, params: Option<&Value>) -> Result<(), CallProblem> {
        let (iface, name) = method
            .rsplit_once('.')
            .ok_or_else(|| CallProblem::MethodNotFound(method.to_string()))?;
        let params = match params {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err(CallProblem::InvalidParameter("parameters".into())),
        };
        if iface == "org.varlink.service" {
            return check_service_call(method, name, params);
        }
        if iface != self.iface.name().as_ref() {
            return Err(CallProblem::InterfaceNotFound(iface.to_string()));
        }
        let m = self
            .iface
            .methods()
            .find(|m| m.name().as_ref() == name)
            .ok_or_else(|| CallProblem::MethodNotFound(method.to_string()))?;
        let empty = serde_json::Map::new();
        let params = params.unwrap_or(&empty);
        self.check_fields(m.inputs(), params, "")
    }

    fn check_fields<'f>(
        &self,
        fields: impl Iterator<Item = &'f Field<'static>>,
        obj: &serde_json::Map<String, Value>,
        prefix: &str,
    ) -> Result<(), CallProblem> {
        let fields: Vec<&Field<'static>> = fields.collect();
        // An undeclared key is refused too: a typo must not silently become "not given".
        if let Some(k) = obj
            .keys()
            .find(|k| !fields.iter().any(|f| f.name().as_ref() == k.as_str()))
        {
            return Err(CallProblem::InvalidParameter(format!("{prefix}{k}")));
        }
        for f in fields {
            let path = format!("{prefix}{}", f.name().as_ref());
            match obj.get(f.name().as_ref()) {
                Some(v) => self.check_value(f.ty(), v, &path)?,
                None if f.ty().as_optional().is_some() => {}
                None => return Err(CallProblem::InvalidParameter(path)),
            }
        }
        Ok(())
    }

    fn check_value(&self, ty: &Type<'static>, v: &Value, path: &str) -> Result<(), CallProblem> {
        let bad = || Err(CallProblem::InvalidParameter(path.to_string()));
        match ty {
            Type::Bool => v.is_boolean().then_some(()).map_or_else(bad, Ok),
            Type::Int => (v.is_i64() || v.is_u64())
                .then_some(())
                .map_or_else(bad, Ok),
            Type::Float => v.is_number().then_some(()).map_or_else(bad, Ok),
            Type::String => v.is_string().then_some(()).map_or_else(bad, Ok),
            Type::Any => Ok(()),
            Type::ForeignObject => v.is_object().then_some(()).map_or_else(bad, Ok),
            Type::Optional(inner) => match v {
                Value::Null => Ok(()),
                _ => self.check_value(inner, v, path),
            },
            Type::Array(inner) => match v {
                Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                    self.check_value(inner, item, &format!("{path}[{i}]"))
                }),
                _ => bad(),
            },
            Type::Map(inner) => match v {
                Value::Object(map) => map.iter().try_for_each(|(k, item)| {
                    self.check_value(inner, item, &format!("{path}.{k}"))
                }),
                _ => bad(),
            },
            Type::Enum(variants) => match v {
                Value::String(s) if variants.iter().any(|x| x.name().as_ref() == s) => Ok(()),
                _ => bad(),
            },
            Type::Object(fields) => match v {
                Value::Object(map) => self.check_fields(fields.iter(), map, &format!("{path}.")),
                _ => bad(),
            },
            Type::Custom(name) => {
                let Some(ct) = self.iface.custom_types().find(|t| t.name() == name) else {
                    return bad();
                };
                match ct {
                    CustomType::Object(o) => match v {
                        Value::Object(map) => {
                            self.check_fields(o.fields(), map, &format!("{path}."))
                        }
                        _ => bad(),
                    },
                    CustomType::Enum(e) => match v {
                        Value::String(s) if e.variants().any(|x| x.name().as_ref() == s) => Ok(()),
                        _ => bad(),
                    },
                }
            }
        }
    }
}

fn check_service_call(
    method: &str,
    name: &str,
    params: Option<&serde_json::Map<String, Value>>,
) -> Result<(), CallProblem> {
    let empty = serde_json::Map::new();
    let params = params.unwrap_or(&empty);
    match name {
        "GetInfo" => match params.keys().next() {
            Some(k) => Err(CallProblem::InvalidParameter(k.clone())),
            None => Ok(()),
        },
        "GetInterfaceDescription" => {
            match params.get("interface") {
                Some(Value::String(_)) => {}
                _ => return Err(CallProblem::InvalidParameter("interface".into())),
            }
            match params.keys().find(|k| *k != "interface") {
                Some(k) => Err(CallProblem::InvalidParameter(k.clone())),
                None => Ok(()),
            }
        }
        _ => Err(CallProblem::MethodNotFound(method.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IDL: &str = "interface org.example.t\n\
        type Lim (memory: ?int, cpus: ?float)\n\
        type Kind (a, b)\n\
        method Status(name: string) -> ()\n\
        method Set(name: string, limits: Lim, persist: bool, kind: ?Kind, tags: []string) -> ()\n";

    fn schema() -> Schema {
        Schema::new(IDL).unwrap()
    }

    fn bad(p: &str) -> Result<(), CallProblem> {
        Err(CallProblem::InvalidParameter(p.into()))
    }

    #[test]
    fn unknown_method_is_named_in_full() {
        let e = schema().check("org.example.t.Nope", None);
        assert_eq!(
            e,
            Err(CallProblem::MethodNotFound("org.example.t.Nope".into()))
        );
    }

    #[test]
    fn unknown_interface() {
        let e = schema().check("org.other.X", None);
        assert_eq!(e, Err(CallProblem::InterfaceNotFound("org.other".into())));
    }

    #[test]
    fn missing_mistyped_and_undeclared_parameters_are_named() {
        let s = schema();
        assert_eq!(s.check("org.example.t.Status", None), bad("name"));
        assert_eq!(
            s.check("org.example.t.Status", Some(&json!({"name": 1}))),
            bad("name")
        );
        assert_eq!(
            s.check("org.example.t.Status", Some(&json!({"name": "a", "x": 1}))),
            bad("x")
        );
        assert_eq!(
            s.check("org.example.t.Status", Some(&json!([1]))),
            bad("parameters")
        );
        assert!(s
            .check("org.example.t.Status", Some(&json!({"name": "a"})))
            .is_ok());
    }

    #[test]
    fn nested_fields_enums_and_arrays() {
        let s = schema();
        let ok = json!({"name": "a", "limits": {"memory": 5}, "persist": true, "tags": ["x"]});
        assert!(s.check("org.example.t.Set", Some(&ok)).is_ok());
        let p = json!({"name": "a", "limits": {"memory": "5"}, "persist": true, "tags": []});
        assert_eq!(s.check("org.example.t.Set", Some(&p)), bad("limits.memory"));
        let p = json!({"name": "a", "limits": {"cpus": 0.5}, "persist": true, "tags": [1]});
        assert_eq!(s.check("org.example.t.Set", Some(&p)), bad("tags[0]"));
        let p = json!({"name": "a", "limits": {}, "persist": true, "tags": [], "kind": "c"});
        assert_eq!(s.check("org.example.t.Set", Some(&p)), bad("kind"));
        let p = json!({"name": "a", "limits": {}, "persist": true, "tags": [], "kind": "b"});
        assert!(s.check("org.example.t.Set", Some(&p)).is_ok());
        // An int is a valid float.
        let p = json!({"name": "a", "limits": {"cpus": 1}, "persist": false, "tags": []});
        assert!(s.check("org.example.t.Set", Some(&p)).is_ok());
    }

    #[test]
    fn service_interface_calls() {
        let s = schema();
        assert!(s.check("org.varlink.service.GetInfo", None).is_ok());
        assert_eq!(
            s.check(
                "org.varlink.service.GetInterfaceDescription",
                Some(&json!({}))
            ),
            bad("interface")
        );
        assert_eq!(
            s.check("org.varlink.service.Frob", None),
            Err(CallProblem::MethodNotFound(
                "org.varlink.service.Frob".into()
            ))
        );
    }

    #[test]
    fn the_committed_idl_parses() {
        Schema::manager().unwrap();
    }
}
