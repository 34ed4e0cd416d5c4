func.func @double(%x: tensor<3xf32> {qopt.name = "x"}) -> (tensor<3xf32> {qopt.name = "y"}) {
  %y = arith.addf %x, %x : tensor<3xf32>
  return %y : tensor<3xf32>
}
func.func @square(%x: tensor<3xf32> {qopt.name = "x"}) -> (tensor<3xf32> {qopt.name = "z"}) {
  %y = arith.mulf %x, %x : tensor<3xf32>
  return %y : tensor<3xf32>
}
