//! A small writer of ONNX graphs (`onnx-protobuf`): named inputs and outputs, nodes with generated value names,
//! inline constants and external-data initializers, serialised as a `ModelProto`.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Value as TypeValue};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};

/// The ONNX operator set every graph uses (ReduceMean takes its axes as an input from 18 on).
pub(crate) const OPSET: i64 = 18;
/// The IR version that goes with opset 18.
const IR_VERSION: i64 = 8;

/// Element types of inputs, outputs and casts.
pub(crate) type Elem = DataType;

/// One dimension of a declared input or output.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// A node attribute.
pub(crate) enum Attr {
    Int(&'static str, i64),
    Ints(&'static str, Vec<i64>),
}

fn attribute(a: &Attr) -> AttributeProto {
    let mut p = AttributeProto::new();
    match *a {
        Attr::Int(name, v) => {
            p.name = name.into();
            p.type_ = EnumOrUnknown::new(AttributeType::INT);
            p.i = v;
        }
        Attr::Ints(name, ref v) => {
            p.name = name.into();
            p.type_ = EnumOrUnknown::new(AttributeType::INTS);
            p.ints = v.clone();
        }
    }
    p
}

fn value_info(name: &str, elem: Elem, dims: &[Dim]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    shape.dim = dims
        .iter()
        .map(|d| {
            let mut dim = Dimension::new();
            dim.value = Some(match *d {
                Dim::Fixed(n) => dimension::Value::DimValue(n as i64),
                Dim::Named(s) => dimension::Value::DimParam(s.into()),
            });
            dim
        })
        .collect();
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = elem as i32;
    tensor.shape = MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.value = Some(TypeValue::TensorType(tensor));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = MessageField::some(ty);
    v
}

/// A graph under construction.
pub(crate) struct Graph {
    g: GraphProto,
    next: usize,
}

impl Graph {
    pub(crate) fn new(name: &str) -> Self {
        let mut g = GraphProto::new();
        g.name = name.into();
        Self { g, next: 0 }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    /// Declares a graph input and returns its name.
    pub(crate) fn input(&mut self, name: &str, elem: Elem, dims: &[Dim]) -> String {
        self.g.input.push(value_info(name, elem, dims));
        name.into()
    }

    /// Declares the value `value` as graph output `name` (through an Identity when the names differ).
    pub(crate) fn output(&mut self, value: &str, name: &str, elem: Elem, dims: &[Dim]) {
        if value != name {
            self.node("Identity", &[value], &[], &[name]);
        }
        self.g.output.push(value_info(name, elem, dims));
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr], outputs: &[&str]) {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = format!("{op}_{}", self.g.node.len());
        n.input = inputs.iter().map(|s| (*s).to_owned()).collect();
        n.output = outputs.iter().map(|s| (*s).to_owned()).collect();
        n.attribute = attrs.iter().map(attribute).collect();
        self.g.node.push(n);
    }

    /// Adds node `op` with one output and returns the output's name.
    pub(crate) fn op(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.node(op, inputs, attrs, &[&out]);
        out
    }

    /// Adds node `op` with `n` outputs.
    pub(crate) fn op_n(&mut self, op: &str, inputs: &[&str], attrs: &[Attr], n: usize) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|_| self.fresh(&op.to_ascii_lowercase())).collect();
        let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
        self.node(op, inputs, attrs, &refs);
        outs
    }

    fn constant(&mut self, elem: Elem, dims: &[usize], fill: impl FnOnce(&mut TensorProto)) -> String {
        let mut t = TensorProto::new();
        t.name = self.fresh("const");
        t.data_type = elem as i32;
        t.dims = dims.iter().map(|&d| d as i64).collect();
        fill(&mut t);
        let name = t.name.clone();
        self.g.initializer.push(t);
        name
    }

    /// A 1-D i64 constant.
    pub(crate) fn ints(&mut self, v: &[i64]) -> String {
        let data = v.to_vec();
        self.constant(Elem::INT64, &[v.len()], |t| t.int64_data = data)
    }

    /// A scalar i64 constant.
    pub(crate) fn int(&mut self, v: i64) -> String {
        self.constant(Elem::INT64, &[], |t| t.int64_data = vec![v])
    }

    /// A scalar f32 constant.
    pub(crate) fn float(&mut self, v: f32) -> String {
        self.constant(Elem::FLOAT, &[], |t| t.float_data = vec![v])
    }

    /// A 1-D f32 constant.
    pub(crate) fn floats(&mut self, v: &[f32]) -> String {
        let data = v.to_vec();
        self.constant(Elem::FLOAT, &[v.len()], |t| t.float_data = data)
    }

    pub(crate) fn has_initializer(&self, name: &str) -> bool {
        self.g.initializer.iter().any(|t| t.name == name)
    }

    /// An f32 initializer stored in `file` (relative to the graph) at `offset`.
    pub(crate) fn external(&mut self, name: &str, dims: &[usize], file: &str, offset: u64) -> String {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.data_type = Elem::FLOAT as i32;
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_location = EnumOrUnknown::new(DataLocation::EXTERNAL);
        let length = dims.iter().product::<usize>() * 4;
        for (k, v) in [("location", file.to_owned()), ("offset", offset.to_string()), ("length", length.to_string())] {
            let mut e = StringStringEntryProto::new();
            e.key = k.into();
            e.value = v;
            t.external_data.push(e);
        }
        self.g.initializer.push(t);
        name.into()
    }

    /// The serialised model.
    pub(crate) fn into_model_bytes(self, doc: &str) -> Result<Vec<u8>, protobuf::Error> {
        let mut m = ModelProto::new();
        m.ir_version = IR_VERSION;
        let mut opset = OperatorSetIdProto::new();
        opset.version = OPSET;
        m.opset_import.push(opset);
        m.producer_name = "lsn".into();
        m.producer_version = crate::export::EXPORTER_VERSION.to_string();
        m.doc_string = doc.into();
        m.graph = MessageField::some(self.g);
        m.write_to_bytes()
    }
}
